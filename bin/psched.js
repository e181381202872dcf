#!/usr/bin/env node
// The CLI lives in TypeScript; Node 24 runs it directly through type stripping.
import '../src/cli.ts';
