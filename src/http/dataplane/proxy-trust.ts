// Which direct peers are proxies whose X-Forwarded-* headers the custom-container proxy believes (serve's
// --trusted-proxy): addresses and CIDR ranges, IPv4 or IPv6. Nobody is trusted unless configured.
import { BlockList, isIP } from "node:net";
import { ConfigError } from "../../errors.ts";

export class TrustedProxies {
  static readonly NONE = new TrustedProxies([]);

  /** The entries as given (trimmed), for logs. */
  readonly entries: readonly string[];
  readonly #list = new BlockList();

  /** Throws InvalidConfiguration naming the first entry that is neither an IP address nor a CIDR range. */
  constructor(entries: readonly string[]) {
    this.entries = entries.map((e) => e.trim()).filter((e) => e !== "");
    for (const entry of this.entries) {
      const [address = "", bits, ...extra] = entry.split("/");
      const ip = unmapped(address);
      const family = isIP(ip);
      const max = family === 4 ? 32 : 128;
      const prefix = bits === undefined ? max : /^\d{1,3}$/.test(bits) ? Number(bits) : Number.NaN;
      if (family === 0 || extra.length > 0 || !(prefix >= 0 && prefix <= max)) {
        throw new ConfigError(
          `--trusted-proxy: '${entry}' is neither an IP address nor a CIDR range (e.g. 10.0.0.5, 10.0.0.0/8, fd00::/8).`,
        );
      }
      this.#list.addSubnet(ip, prefix, family === 4 ? "ipv4" : "ipv6");
    }
  }

  /** Whether the direct peer at `address` is a trusted proxy. */
  trusts(address: string | undefined): boolean {
    if (address === undefined || this.entries.length === 0) return false;
    const ip = unmapped(address);
    const family = isIP(ip);
    return family !== 0 && this.#list.check(ip, family === 4 ? "ipv4" : "ipv6");
  }
}

/** An IPv4 peer of a dual-stack socket ("::ffff:10.0.0.5") as the IPv4 address it is. */
export function unmapped(address: string): string {
  const v4 = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)?.[1];
  return v4 ?? address;
}
