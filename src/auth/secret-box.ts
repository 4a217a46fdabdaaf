// Encryption at rest for pool secrets: AES-256-GCM with a key kept in the data dir (never in the database).
import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";

const VERSION = "v1";

export class SecretBox {
  readonly #key: Buffer;

  constructor(keyBase64: string) {
    this.#key = Buffer.from(keyBase64, "base64");
    if (this.#key.length !== 32) throw new Error("the secret key must be 32 bytes (base64)");
  }

  static generateKey(): string {
    return randomBytes(32).toString("base64");
  }

  seal(plaintext: string): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv("aes-256-gcm", this.#key, iv);
    const body = Buffer.concat([cipher.update(plaintext, "utf8"), cipher.final()]);
    return `${VERSION}:${Buffer.concat([iv, cipher.getAuthTag(), body]).toString("base64")}`;
  }

  open(sealed: string): string {
    const [version, data] = sealed.split(":", 2);
    if (version !== VERSION || data === undefined) throw new Error("unknown sealed secret format");
    const raw = Buffer.from(data, "base64");
    const decipher = createDecipheriv("aes-256-gcm", this.#key, raw.subarray(0, 12));
    decipher.setAuthTag(raw.subarray(12, 28));
    return Buffer.concat([decipher.update(raw.subarray(28)), decipher.final()]).toString("utf8");
  }
}
