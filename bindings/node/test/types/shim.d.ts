// The one Node type index.d.ts names, for tsc without @types/node.
declare class Buffer extends Uint8Array {}
