// Command whoami is the Go SDK v1 client of the sidecred compatibility tests.
//
// It builds a session from the default credential chain, exactly as an
// application in a patched pod would, calls sts:GetCallerIdentity and prints
// the caller's ARN. Go SDK v1 ignores AWS_ENDPOINT_URL_STS, so the test passes
// the STS emulator's address with -endpoint-url.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/aws/session"
	"github.com/aws/aws-sdk-go/service/sts"
)

func main() {
	endpoint := flag.String("endpoint-url", "", "STS endpoint (test plumbing)")
	version := flag.Bool("version", false, "print the SDK version and exit")
	flag.Parse()
	if *version {
		fmt.Println(aws.SDKVersion)
		return
	}

	cfg := aws.NewConfig()
	if *endpoint != "" {
		cfg = cfg.WithEndpoint(*endpoint)
	}
	sess, err := session.NewSession(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "session:", err)
		os.Exit(1)
	}
	out, err := sts.New(sess).GetCallerIdentity(&sts.GetCallerIdentityInput{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "GetCallerIdentity:", err)
		os.Exit(1)
	}
	fmt.Println(aws.StringValue(out.Arn))
}
