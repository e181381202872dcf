import { BlockList, isIP } from 'node:net';

/**
 * The addresses allowed to call the original's endpoints without a token
 * (--legacy-allow): the original's servers cannot send one. IPv4 and IPv6
 * addresses and CIDR ranges, matched with node:net's BlockList.
 */
export interface AddressList {
  /** True when `address` (a request's remote address) is in the list. */
  allows(address: string | undefined): boolean;
  readonly entries: readonly string[];
}

/** What is wrong with one entry ("10.0.0.5", "10.0.1.0/24", "fd00::/8"), or undefined. */
export function addressEntryProblem(entry: string): string | undefined {
  const [address, prefix, extra] = entry.split('/');
  const family = isIP(address ?? '');
  if (family === 0 || extra !== undefined) return 'must list IPv4 or IPv6 addresses or CIDR ranges such as 10.0.0.5 or 10.0.1.0/24';
  if (prefix !== undefined && (!/^\d{1,3}$/.test(prefix) || Number(prefix) > (family === 4 ? 32 : 128))) {
    return `has a bad prefix length in ${entry} (0-${family === 4 ? 32 : 128})`;
  }
  return undefined;
}

/** An IPv4 client on a dual-stack socket shows as ::ffff:10.0.0.5: it is matched as 10.0.0.5. */
const MAPPED_IPV4 = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i;

export function addressList(entries: readonly string[]): AddressList {
  const list = new BlockList();
  for (const entry of entries) {
    const [address, prefix] = entry.split('/') as [string, string | undefined];
    const family = isIP(address) === 6 ? 'ipv6' : 'ipv4';
    if (prefix === undefined) list.addAddress(address, family);
    else list.addSubnet(address, Number(prefix), family);
  }
  return {
    entries,
    allows(address) {
      if (!address || entries.length === 0) return false;
      const plain = MAPPED_IPV4.exec(address)?.[1] ?? address;
      const family = isIP(plain);
      if (family === 0) return false;
      return list.check(plain, family === 6 ? 'ipv6' : 'ipv4');
    },
  };
}
