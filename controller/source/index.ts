export * from './directory.js';
export * from './manifests.js';
export * from './source.js';
