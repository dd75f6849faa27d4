package secretseal

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
)

// KMSKey wraps data keys with an AWS KMS key. The resource name travels as
// the KMS encryption context, so KMS itself refuses to unwrap a data key for
// another resource, and CloudTrail records which secret was opened.
type KMSKey struct {
	client *kms.Client
	keyID  string
}

// NewKMSKey wraps with keyID (id, ARN or alias) through client.
func NewKMSKey(client *kms.Client, keyID string) *KMSKey {
	return &KMSKey{client: client, keyID: keyID}
}

const contextKey = "sluice:resource"

// Kind implements KeyWrapper.
func (*KMSKey) Kind() string { return "kms" }

// WrapKey implements KeyWrapper with kms:Encrypt.
func (k *KMSKey) WrapKey(ctx context.Context, dataKey []byte, context string) ([]byte, error) {
	out, err := k.client.Encrypt(ctx, &kms.EncryptInput{
		KeyId:             aws.String(k.keyID),
		Plaintext:         dataKey,
		EncryptionContext: map[string]string{contextKey: context},
	})
	if err != nil {
		return nil, fmt.Errorf("kms encrypt: %w", err)
	}
	return out.CiphertextBlob, nil
}

// UnwrapKey implements KeyWrapper with kms:Decrypt, pinned to the key.
func (k *KMSKey) UnwrapKey(ctx context.Context, wrapped []byte, context string) ([]byte, error) {
	out, err := k.client.Decrypt(ctx, &kms.DecryptInput{
		KeyId:             aws.String(k.keyID),
		CiphertextBlob:    wrapped,
		EncryptionContext: map[string]string{contextKey: context},
	})
	if err != nil {
		return nil, fmt.Errorf("kms decrypt: %w", err)
	}
	return out.Plaintext, nil
}

// Choose answers the Sealer a service's settings ask for: KMS when kmsKeyID
// is set (kmsClient makes its client), else the local key in masterKeyFile,
// created when missing; an error when neither is set.
func Choose(ctx context.Context, kmsKeyID, masterKeyFile string, kmsClient func(context.Context) (*kms.Client, error)) (*Sealer, error) {
	switch {
	case kmsKeyID != "":
		client, err := kmsClient(ctx)
		if err != nil {
			return nil, err
		}
		return New(NewKMSKey(client, kmsKeyID)), nil
	case masterKeyFile != "":
		key, err := LoadOrCreateLocalKey(masterKeyFile)
		if err != nil {
			return nil, err
		}
		return New(key), nil
	default:
		return nil, errors.New("configure --master-key-file or --kms-key-id to seal secrets")
	}
}
