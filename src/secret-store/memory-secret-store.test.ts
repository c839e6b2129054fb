import { runSecretStoreContract } from '../../test/support/secret-store-contract.js';
import { MemorySecretStore } from './memory-secret-store.js';

runSecretStoreContract('MemorySecretStore', async () => {
  const store = new MemorySecretStore();
  await store.open();
  return { store, cleanup: () => store.close() };
});
