export {
  matchesLabels,
  namespacedKey,
  ObjectCache,
  objectKey,
  splitKey,
  type CacheEvent,
  type CacheListener,
  type IndexFunc,
  type ObjectLike,
  type ObjectMetaLike,
} from './cache.js';
export { enqueueForObject, enqueueFromMap, type KeyQueue } from './handlers.js';
