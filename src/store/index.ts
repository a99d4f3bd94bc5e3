export * from './content-store.js';
export * from './images.js';
export * from './write-image.js';
