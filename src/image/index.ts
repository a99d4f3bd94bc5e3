export * from './digest.js';
export * from './media-types.js';
export * from './types.js';
export * from './reference.js';
export * from './source.js';
export * from './partial.js';
export * from './platform.js';
export * from './config.js';
