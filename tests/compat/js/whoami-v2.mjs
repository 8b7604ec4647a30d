// The AWS SDK for JavaScript v2 (npm `aws-sdk`) client of the sidecred compatibility tests.
//
// It uses the SDK's global default credential provider chain (what
// `new AWS.STS()` does when given no credentials), calls
// sts:GetCallerIdentity and prints the caller's ARN. SDK v2 does not read
// AWS_ENDPOINT_URL_STS, so the test passes the STS address with --endpoint-url.
//
//   node whoami-v2.mjs --version
//   node whoami-v2.mjs [--endpoint-url URL]
import AWS from "aws-sdk";

const args = process.argv.slice(2);
if (args.includes("--version")) {
  console.log(AWS.VERSION);
  process.exit(0);
}

try {
  const at = args.indexOf("--endpoint-url");
  const sts = new AWS.STS(at >= 0 ? { endpoint: args[at + 1] } : {});
  const out = await sts.getCallerIdentity({}).promise();
  console.log(out.Arn);
} catch (err) {
  console.error(`GetCallerIdentity: ${err.name}: ${err.message}`);
  process.exit(1);
}
