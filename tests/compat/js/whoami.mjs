// The AWS SDK for JavaScript v3 client of the sidecred compatibility tests.
//
// It resolves credentials through the Node.js default provider chain (the
// chain every SDK client uses when given none), calls sts:GetCallerIdentity
// and prints the caller's ARN. Recent releases read the STS address from
// AWS_ENDPOINT_URL_STS themselves; older ones are given --endpoint-url.
//
// Two SDK versions are installed side by side (package.json): the pinned
// current one, and with --min the oldest release with token-file support,
// 3.458.0, installed under npm aliases.
//
//   node whoami.mjs [--min] --version
//   node whoami.mjs [--min] [--endpoint-url URL]
import { readFileSync } from "node:fs";

const args = process.argv.slice(2);
const min = args.includes("--min");
const stsPackage = min ? "client-sts-min" : "@aws-sdk/client-sts";
const providersPackage = min ? "credential-providers-min" : "@aws-sdk/credential-providers";

if (args.includes("--version")) {
  const pkg = new URL(`./node_modules/${stsPackage}/package.json`, import.meta.url);
  console.log(JSON.parse(readFileSync(pkg, "utf8")).version);
  process.exit(0);
}

const { GetCallerIdentityCommand, STSClient } = await import(stsPackage);
const { fromNodeProviderChain } = await import(providersPackage);
try {
  const config = { credentials: fromNodeProviderChain() };
  const at = args.indexOf("--endpoint-url");
  if (at >= 0) config.endpoint = args[at + 1];
  const client = new STSClient(config);
  const out = await client.send(new GetCallerIdentityCommand({}));
  console.log(out.Arn);
} catch (err) {
  console.error(`GetCallerIdentity: ${err.name}: ${err.message}`);
  process.exit(1);
}
