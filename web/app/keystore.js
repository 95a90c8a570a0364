// What the web TV keeps across restarts, in IndexedDB: its device id and Ed25519 signing key
// (generated here, non-extractable: the private key never leaves the browser's key store),
// the account it joined (the secret as a non-extractable HKDF key), the roster, and the
// counter floor of its sealed envelopes. Records are structured clones: CryptoKeys are
// stored as themselves.

const DB = "continuity";
const STORE = "keys";

function db() {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

async function tx(mode, fn) {
  const d = await db();
  return new Promise((resolve, reject) => {
    const t = d.transaction(STORE, mode);
    const req = fn(t.objectStore(STORE));
    t.oncomplete = () => {
      d.close();
      resolve(req?.result);
    };
    t.onerror = t.onabort = () => {
      d.close();
      reject(t.error);
    };
  });
}

export const get = (key) => tx("readonly", (s) => s.get(key));
export const put = (key, value) => tx("readwrite", (s) => s.put(value, key));
export const remove = (key) => tx("readwrite", (s) => s.delete(key));
