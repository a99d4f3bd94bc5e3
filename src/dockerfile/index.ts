export * from './errors.js';
export * from './parser.js';
export * from './expand.js';
export * from './stages.js';
export * from './dockerignore.js';
export * from './dump.js';
export * from './commands.js';
