// Package awspolicy writes the IAM policy documents Sluice shows its users
// to paste into their AWS account: the trust policy of a customer's role,
// the least-privilege permissions a destination needs, and the one
// statement that grants a permission a delivery found missing.
package awspolicy

import (
	"encoding/json"
	"strings"

	"github.com/sluicehq/sluice/pkg/awsname"
)

type document struct {
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

func render(st ...statement) string {
	b, _ := json.MarshalIndent(document{Version: "2012-10-17", Statement: st}, "", "  ")
	return string(b)
}

// Trust is the trust policy of the customer's role: the platform identity
// may assume it, only with the credential's External ID.
func Trust(platformARN, externalID string) string {
	return render(statement{
		Sid:       "AllowSluiceToAssumeThisRole",
		Effect:    "Allow",
		Principal: map[string]any{"AWS": platformARN},
		Action:    "sts:AssumeRole",
		Condition: map[string]any{"StringEquals": map[string]any{"sts:ExternalId": externalID}},
	})
}

// writeActions are what a delivery does to objects under the prefix: write
// (multipart included), tag, set the ACL, read back its head, clean up.
var writeActions = []string{
	"s3:PutObject", "s3:PutObjectTagging", "s3:PutObjectAcl", "s3:GetObject",
	"s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts",
}

// arns answers the ARN of bucket (a name or an access point ARN) and of its
// objects under prefix.
func arns(bucket, prefix string) (bucketARN, objectsARN string) {
	bucketARN, objectsARN = "arn:aws:s3:::"+bucket, "arn:aws:s3:::"+bucket+"/"+prefix+"*"
	if b, err := awsname.ParseBucket(bucket); err == nil && b.AccessPoint != nil {
		bucketARN, objectsARN = b.AccessPoint.String(), b.AccessPoint.String()+"/object/"+prefix+"*"
	}
	return bucketARN, objectsARN
}

// Permissions is the least-privilege policy for bucket (a name or an
// access point ARN) and prefix.
func Permissions(bucket, prefix string) string {
	bucketARN, objectsARN := arns(bucket, prefix)
	return render(
		statement{Sid: "FindTheBucket", Effect: "Allow", Action: []string{"s3:GetBucketLocation"}, Resource: bucketARN},
		list(bucketARN, prefix),
		statement{Sid: "WriteUnderPrefix", Effect: "Allow", Action: writeActions, Resource: objectsARN},
	)
}

func list(bucketARN, prefix string) statement {
	st := statement{Sid: "ListUnderPrefix", Effect: "Allow", Action: "s3:ListBucket", Resource: bucketARN}
	if prefix != "" {
		st.Condition = map[string]any{"StringLike": map[string]any{"s3:prefix": []string{prefix + "*"}}}
	}
	return st
}

// Grant is a policy with the one statement that allows action (an IAM
// action such as s3:PutObject) where a delivery to bucket and prefix needs
// it; for a KMS action, on kmsKey (any key when empty).
func Grant(action, bucket, prefix, kmsKey string) string {
	bucketARN, objectsARN := arns(bucket, prefix)
	sid := "AllowSluice" + strings.NewReplacer("s3:", "", "kms:", "", "sts:", "").Replace(action)
	switch {
	case action == "s3:ListBucket":
		st := list(bucketARN, prefix)
		st.Sid = sid
		return render(st)
	case action == "s3:GetBucketLocation":
		return render(statement{Sid: sid, Effect: "Allow", Action: action, Resource: bucketARN})
	case strings.HasPrefix(action, "kms:"):
		resource := kmsKey
		if !strings.HasPrefix(resource, "arn:") {
			resource = "*"
		}
		return render(statement{Sid: sid, Effect: "Allow", Action: action, Resource: resource})
	case strings.HasPrefix(action, "s3:"):
		return render(statement{Sid: sid, Effect: "Allow", Action: action, Resource: objectsARN})
	}
	return render(statement{Sid: sid, Effect: "Allow", Action: action, Resource: "*"})
}
