// The AWS SDK for JavaScript v3 client of the sidecred compatibility tests.
//
// It resolves credentials through the Node.js default provider chain (the
// chain every SDK client uses when given none), calls sts:GetCallerIdentity
// and prints the caller's ARN. The STS address comes from AWS_ENDPOINT_URL_STS,
// which SDK v3 reads itself.
//
//   node whoami.mjs --version
//   node whoami.mjs
import { readFileSync } from "node:fs";
import { GetCallerIdentityCommand, STSClient } from "@aws-sdk/client-sts";
import { fromNodeProviderChain } from "@aws-sdk/credential-providers";

if (process.argv[2] === "--version") {
  const pkg = new URL("./node_modules/@aws-sdk/client-sts/package.json", import.meta.url);
  console.log(JSON.parse(readFileSync(pkg, "utf8")).version);
  process.exit(0);
}

try {
  const client = new STSClient({ credentials: fromNodeProviderChain() });
  const out = await client.send(new GetCallerIdentityCommand({}));
  console.log(out.Arn);
} catch (err) {
  console.error(`GetCallerIdentity: ${err.name}: ${err.message}`);
  process.exit(1);
}
