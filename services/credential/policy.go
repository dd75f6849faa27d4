package credential

import (
	"crypto/rand"
	"encoding/json"

	"github.com/sluicehq/sluice/pkg/awsname"
)

// externalIDAlphabet is the part of the allowed External ID alphabet that
// survives copy and paste and shell quoting unchanged.
const externalIDAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// externalIDLength gives about 380 bits of randomness, far beyond guessing.
const externalIDLength = 64

// newExternalID draws an External ID from crypto/rand without modulo bias.
func newExternalID() (string, error) {
	out := make([]byte, 0, externalIDLength)
	buf := make([]byte, externalIDLength*2)
	for len(out) < externalIDLength {
		if _, err := rand.Read(buf); err != nil {
			return "", err
		}
		for _, b := range buf {
			// 248 is the largest multiple of 62 below 256: reject above it.
			if b < 248 && len(out) < externalIDLength {
				out = append(out, externalIDAlphabet[int(b)%len(externalIDAlphabet)])
			}
		}
	}
	return string(out), nil
}

type policyDoc struct {
	Version   string      `json:"Version"`
	Statement []statement `json:"Statement"`
}

type statement struct {
	Sid       string         `json:"Sid"`
	Effect    string         `json:"Effect"`
	Principal map[string]any `json:"Principal,omitempty"`
	Action    any            `json:"Action"`
	Resource  any            `json:"Resource,omitempty"`
	Condition map[string]any `json:"Condition,omitempty"`
}

func render(d policyDoc) string {
	b, _ := json.MarshalIndent(d, "", "  ")
	return string(b)
}

// trustPolicy is the trust policy of the customer's role: the platform
// identity may assume it, only with this credential's External ID.
func trustPolicy(platformARN, externalID string) string {
	return render(policyDoc{Version: "2012-10-17", Statement: []statement{{
		Sid:       "AllowSluiceToAssumeThisRole",
		Effect:    "Allow",
		Principal: map[string]any{"AWS": platformARN},
		Action:    "sts:AssumeRole",
		Condition: map[string]any{"StringEquals": map[string]any{"sts:ExternalId": externalID}},
	}}})
}

// writeActions are what a delivery does to objects under the prefix: write
// (multipart included), tag, set the ACL, read back its head, clean up.
var writeActions = []string{
	"s3:PutObject", "s3:PutObjectTagging", "s3:PutObjectAcl", "s3:GetObject",
	"s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts",
}

// permissionsPolicy is the least-privilege policy for bucket (a name or an
// access point ARN) and prefix.
func permissionsPolicy(bucket, prefix string) string {
	bucketARN, objectsARN := "arn:aws:s3:::"+bucket, "arn:aws:s3:::"+bucket+"/"+prefix+"*"
	if b, err := awsname.ParseBucket(bucket); err == nil && b.AccessPoint != nil {
		bucketARN, objectsARN = b.AccessPoint.String(), b.AccessPoint.String()+"/object/"+prefix+"*"
	}
	list := statement{Sid: "ListUnderPrefix", Effect: "Allow", Action: "s3:ListBucket", Resource: bucketARN}
	if prefix != "" {
		list.Condition = map[string]any{"StringLike": map[string]any{"s3:prefix": []string{prefix + "*"}}}
	}
	return render(policyDoc{Version: "2012-10-17", Statement: []statement{
		{Sid: "FindTheBucket", Effect: "Allow", Action: []string{"s3:GetBucketLocation"}, Resource: bucketARN},
		list,
		{Sid: "WriteUnderPrefix", Effect: "Allow", Action: writeActions, Resource: objectsARN},
	}})
}
