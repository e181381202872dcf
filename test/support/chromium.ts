import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';

/**
 * Debian's Chromium driven by playwright-core (never a downloaded browser):
 * the browser test and scripts/screenshots.ts launch it the same way.
 */
export const CHROMIUM_PATH = process.env.PSCHED_CHROMIUM ?? '/usr/bin/chromium';

/**
 * Headless, and quiet on the network: no sandbox (CI runs as root), no GPU,
 * no background fetches, component updates or sync that would reach out of
 * 127.0.0.1 or slow the start.
 */
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Launches Chromium, or fails with what to install: the browser test must never skip silently. */
export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(
      `Chromium is not installed at ${CHROMIUM_PATH}: install it with \`apt-get install -y chromium\` ` +
        '(.ci/run does), or point PSCHED_CHROMIUM at a Chromium binary.',
    );
  }
  return chromium.launch({ executablePath: CHROMIUM_PATH, headless: true, args: CHROMIUM_ARGS, timeout: 30_000 });
}
