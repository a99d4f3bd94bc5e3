export * from './content-store.js';
export * from './images.js';
export * from './write-image.js';
export { layerContentSize, imageContentSize } from './layer-size.js';
