// `--tls-self-signed`: a private CA and a server certificate signed by it, kept in the data dir and reused on
// the next start. Clients trust the CA file (e.g. NODE_EXTRA_CA_CERTS, curl --cacert).
import { webcrypto } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { isIP } from "node:net";
import { join } from "node:path";
import "reflect-metadata"; // @peculiar/x509 resolves its crypto provider through tsyringe, which needs it first
import * as x509 from "@peculiar/x509";

x509.cryptoProvider.set(webcrypto);

const ALG = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;

export interface TlsFiles {
  caPath: string;
  certPath: string;
  keyPath: string;
}

async function exportKey(key: webcrypto.CryptoKey): Promise<string> {
  const der = await webcrypto.subtle.exportKey("pkcs8", key);
  const b64 = Buffer.from(der)
    .toString("base64")
    .replace(/(.{64})/g, "$1\n");
  return `-----BEGIN PRIVATE KEY-----\n${b64}\n-----END PRIVATE KEY-----\n`;
}

/** Creates (once) a CA and a certificate for `hosts` under `dir`; returns the file paths. */
export async function ensureSelfSignedTls(dir: string, hosts: string[]): Promise<TlsFiles> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const files = {
    caPath: join(dir, "ca.pem"),
    certPath: join(dir, "server.pem"),
    keyPath: join(dir, "server-key.pem"),
  };
  const namesPath = join(dir, "server-names.json");
  const names = [...new Set(["localhost", "127.0.0.1", "::1", ...hosts])].sort();
  if (
    existsSync(files.caPath) &&
    existsSync(files.certPath) &&
    existsSync(files.keyPath) &&
    existsSync(namesPath) &&
    readFileSync(namesPath, "utf8") === JSON.stringify(names)
  ) {
    return files;
  }
  const now = new Date();
  const notAfter = new Date(now.getTime() + 825 * 24 * 3600 * 1000);
  const caKeys = (await webcrypto.subtle.generateKey(ALG, true, [
    "sign",
    "verify",
  ])) as webcrypto.CryptoKeyPair;
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: "CN=sessionpool local CA",
    notBefore: now,
    notAfter,
    signingAlgorithm: ALG,
    keys: caKeys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey),
    ],
  });
  const serverKeys = (await webcrypto.subtle.generateKey(ALG, true, [
    "sign",
    "verify",
  ])) as webcrypto.CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: "CN=sessionpool",
    issuer: ca.subject,
    notBefore: now,
    notAfter,
    signingAlgorithm: ALG,
    publicKey: serverKeys.publicKey,
    signingKey: caKeys.privateKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment,
        true,
      ),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth], false),
      new x509.SubjectAlternativeNameExtension(
        names.map((n) => ({ type: isIP(n) ? "ip" : "dns", value: n })),
      ),
      await x509.AuthorityKeyIdentifierExtension.create(ca, false),
    ],
  });
  writeFileSync(files.caPath, ca.toString("pem"), { mode: 0o644 });
  writeFileSync(files.certPath, `${cert.toString("pem")}\n${ca.toString("pem")}\n`, { mode: 0o644 });
  writeFileSync(files.keyPath, await exportKey(serverKeys.privateKey), { mode: 0o600 });
  writeFileSync(namesPath, JSON.stringify(names), { mode: 0o644 });
  return files;
}

function randomSerial(): string {
  const bytes = webcrypto.getRandomValues(new Uint8Array(16));
  bytes[0] = bytes[0]! & 0x7f;
  return Buffer.from(bytes).toString("hex");
}
