// Errors that point at the Dockerfile: "Dockerfile:3:5: unknown instruction: RUNN".
import { UserError } from '../util/errors.js';

export interface Position {
  /** 1-based line. */
  line: number;
  /** 1-based column. */
  column: number;
}

export class DockerfileError extends UserError {
  override name = 'DockerfileError';
  constructor(readonly file: string, readonly position: Position, readonly detail: string, opts: { cause?: unknown } = {}) {
    super(`${file}:${position.line}:${position.column}: ${detail}`, { cause: opts.cause });
  }
}
