// The `go` client: aws-sdk-go-v2's default chain (config.LoadDefaultConfig), which is
// what the Earthly CLI resolves `RUN --aws` credentials with, then sts:GetCallerIdentity.
// The STS endpoint is the first argument: aws-sdk-go-v2 1.17 reads no endpoint variable.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: imdsh-go STS_ENDPOINT")
		os.Exit(2)
	}
	ctx := context.Background()
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	client := sts.NewFromConfig(cfg, func(o *sts.Options) {
		o.EndpointResolver = sts.EndpointResolverFromURL(os.Args[1])
	})
	out, err := client.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	answer, _ := json.Marshal(map[string]string{
		"Arn":     aws.ToString(out.Arn),
		"UserId":  aws.ToString(out.UserId),
		"Account": aws.ToString(out.Account),
	})
	fmt.Println(string(answer))
}
