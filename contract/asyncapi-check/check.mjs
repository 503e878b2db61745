// Parses an AsyncAPI document with the AsyncAPI initiative's parser (the spec's JSON Schema
// and its Spectral rules) and fails on any error or warning; informational hints are printed.
// Usage: node check.mjs contract/asyncapi.json
import fs from 'node:fs';
import { Parser } from '@asyncapi/parser';

const file = process.argv[2];
const { document, diagnostics } = await new Parser().parse(fs.readFileSync(file, 'utf8'));
const SEVERITY = ['error', 'warning', 'info', 'hint'];
let failed = !document;
for (const d of diagnostics) {
  console.log(`${SEVERITY[d.severity]} ${d.code} at /${d.path.join('/')}: ${d.message}`);
  if (d.severity <= 1) failed = true;
}
if (failed) {
  console.error(`${file}: not a valid AsyncAPI document`);
  process.exit(1);
}
console.log(`${file}: a valid AsyncAPI ${document.version()} document, ` +
  `${document.channels().length} channels, ${document.messages().length} messages, ` +
  `${document.operations().length} operations`);
