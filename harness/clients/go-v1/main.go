// The `go-v1` client: aws-sdk-go (v1)'s default chain (session.NewSession, whose chain
// ends with ec2rolecreds), then sts:GetCallerIdentity. The STS endpoint is the first
// argument, set as the client's Endpoint: aws-sdk-go 1.44 reads no endpoint variable.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/aws/session"
	"github.com/aws/aws-sdk-go/service/sts"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: imdsh-go-v1 STS_ENDPOINT")
		os.Exit(2)
	}
	sess, err := session.NewSession()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	client := sts.New(sess, aws.NewConfig().WithEndpoint(os.Args[1]))
	out, err := client.GetCallerIdentity(&sts.GetCallerIdentityInput{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	answer, _ := json.Marshal(map[string]string{
		"Arn":     aws.StringValue(out.Arn),
		"UserId":  aws.StringValue(out.UserId),
		"Account": aws.StringValue(out.Account),
	})
	fmt.Println(string(answer))
}
