const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|localhost|\[::1\])$/i;

/** A host name or address that only this machine reaches: 127.x.x.x, ::1, localhost. */
export function isLoopbackHost(host: string): boolean {
  return LOOPBACK.test(host);
}
