// The ES module entry of the rhizos package: the same objects as the
// CommonJS entry (index.js), as named exports and as the default export.
import { createRequire } from 'node:module';

const rhizos = createRequire(import.meta.url)('./index.js');

export const {
  version, libraryVersion, addonPath, statusName,
  loadFlow, Flow, run, inputsFromPairs, Matcher, detectHardware, Ledger, Vault, newId,
  estimate, Client,
} = rhizos;
export default rhizos;
