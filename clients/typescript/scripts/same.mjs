// Fails when the committed generated types differ from what the generator makes of the
// OpenAPI document now: `npm run gen` updates them.
import { readFileSync, rmSync } from "node:fs";
const [committed, fresh] = process.argv.slice(2);
const a = readFileSync(committed, "utf8");
const b = readFileSync(fresh, "utf8");
rmSync(fresh);
if (a !== b) {
  console.error(`${committed} is stale: run "npm run gen" in clients/typescript and commit it`);
  process.exit(1);
}
