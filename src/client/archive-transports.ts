// Bridges the file transports (oci:, oci-archive:, docker-archive:) to src/archive.
import type { ImageDestination, ImageSource } from '../image/source.js';
import { UserError } from '../util/errors.js';

export function archiveTransports(transport: string): {
  openSource(l: { transport: string; path: string; tag?: string }): Promise<ImageSource>;
  openDestination(l: { transport: string; path: string; tag?: string }): Promise<ImageDestination>;
} {
  const unavailable = async (): Promise<never> => { throw new UserError(`transport "${transport}:" is not available in this build`); };
  return { openSource: unavailable, openDestination: unavailable };
}
