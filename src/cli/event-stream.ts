// Reads a text/event-stream response as it arrives (a streamed execution, docs/streaming.md): feed it the bytes,
// it calls back once per complete event. Comments (keep-alives) are skipped.
import { StringDecoder } from "node:string_decoder";

export interface ServerEvent {
  event: string;
  data: string;
}

export class EventStreamParser {
  readonly #onEvent: (event: ServerEvent) => void;
  readonly #decoder = new StringDecoder("utf8");
  #buffer = "";

  constructor(onEvent: (event: ServerEvent) => void) {
    this.#onEvent = onEvent;
  }

  feed(chunk: Buffer): void {
    this.#buffer += this.#decoder.write(chunk).replace(/\r\n?/g, "\n");
    for (let end = this.#buffer.indexOf("\n\n"); end >= 0; end = this.#buffer.indexOf("\n\n")) {
      const block = this.#buffer.slice(0, end);
      this.#buffer = this.#buffer.slice(end + 2);
      let event = "message";
      const data: string[] = [];
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") event = value;
        else if (field === "data") data.push(value);
      }
      if (data.length > 0) this.#onEvent({ event, data: data.join("\n") });
    }
  }
}
