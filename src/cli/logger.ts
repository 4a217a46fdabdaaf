// What the CLI tells the user on stderr besides errors: warnings (hidden by --only-show-errors), info lines
// (--verbose) and HTTP traces (--debug). Never a token: callers pass no credentials here.

export interface LogLevels {
  verbose: boolean;
  debug: boolean;
  onlyShowErrors: boolean;
}

export class Logger {
  readonly levels: LogLevels;
  readonly #write: (text: string) => void;

  constructor(levels: LogLevels, write: (text: string) => void = (t) => process.stderr.write(t)) {
    this.levels = levels;
    this.#write = write;
  }

  warn(message: string): void {
    if (!this.levels.onlyShowErrors) this.#write(`WARNING: ${message}\n`);
  }

  info(message: string): void {
    if ((this.levels.verbose || this.levels.debug) && !this.levels.onlyShowErrors)
      this.#write(`INFO: ${message}\n`);
  }

  debug(message: string): void {
    if (this.levels.debug) this.#write(`DEBUG: ${message}\n`);
  }

  /** A line for the user that is not a warning (e.g. "Session pool successfully deleted"). */
  note(message: string): void {
    if (!this.levels.onlyShowErrors) this.#write(`${message}\n`);
  }
}

export const QUIET_LOGGER = new Logger({ verbose: false, debug: false, onlyShowErrors: true }, () => {});
