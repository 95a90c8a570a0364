// WebCrypto: the browser's, or Node's (which puts it on globalThis only from version 19).
export const webcrypto = globalThis.crypto?.subtle ? globalThis.crypto : (await import("node:crypto")).webcrypto;
export const subtle = webcrypto.subtle;
