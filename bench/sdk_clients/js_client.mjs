// A long-running AWS SDK for JavaScript v3 application for bench/sdk_economy.py.
//
// Date.now is the SDK's clock for credential expiry; it is replaced by a
// simulated one. For each line on stdin (a simulated Unix time) the STS
// client resolves its credentials as its signing middleware does before every
// request (the client's memoised credential provider) and prints the key id
// and the expiry of what it was given (Unix seconds).
import { createRequire } from "node:module";
import readline from "node:readline";

const require = createRequire(`${process.env.SIDECRED_BENCH_JS_DIR}/package.json`);
const { STSClient } = require("@aws-sdk/client-sts");
const { fromNodeProviderChain } = require("@aws-sdk/credential-providers");

let now = Date.now();
Date.now = () => now;
const client = new STSClient({ credentials: fromNodeProviderChain() });
const lines = readline.createInterface({ input: process.stdin });
for await (const line of lines) {
  now = Number(line) * 1000;
  const credentials = await client.config.credentials();
  process.stdout.write(`${credentials.accessKeyId} ${credentials.expiration.getTime() / 1000}\n`);
}
