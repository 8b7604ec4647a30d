// Command whoami-v2 is the Go SDK v2 client of the sidecred compatibility tests.
//
// It loads the default config (and so the default credential chain), exactly
// as an application in a patched pod would, calls sts:GetCallerIdentity and
// prints the caller's ARN. The Debian SDK (config module 1.17) ignores
// AWS_ENDPOINT_URL_STS, so the test passes the STS emulator's address with
// -endpoint-url.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

func main() {
	endpoint := flag.String("endpoint-url", "", "STS endpoint (test plumbing)")
	flag.Parse()

	ctx := context.Background()
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "config:", err)
		os.Exit(1)
	}
	client := sts.NewFromConfig(cfg, func(o *sts.Options) {
		if *endpoint != "" {
			o.EndpointResolver = sts.EndpointResolverFromURL(*endpoint)
		}
	})
	out, err := client.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "GetCallerIdentity:", err)
		os.Exit(1)
	}
	fmt.Println(aws.ToString(out.Arn))
}
