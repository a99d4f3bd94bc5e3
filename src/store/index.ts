export * from './content-store.js';
export * from './images.js';
