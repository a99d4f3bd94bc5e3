// The layer subsystem's error, in its own module so the small tar readers (tar-fields, the
// header tap, the entry rules) can raise it without importing the extractor.
import { UserError } from '../util/errors.js';

/** A refused or unreadable layer entry; the message names the entry. */
export class LayerError extends UserError {
  override name = 'LayerError';
}
