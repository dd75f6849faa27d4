package testidp

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
)

// Login runs the authorization code flow with PKCE against the provider at
// issuer as a browser would (the login form posted with user and
// password), for client id and secret with redirect, and answers the
// access token the token endpoint gives for the code. For tests and
// scripts; the console runs the same flow for real users.
func Login(ctx context.Context, issuer, clientID, secret, redirect, user, password string) (string, error) {
	jar, _ := cookiejar.New(nil)
	var landed *url.URL
	hc := &http.Client{Jar: jar, CheckRedirect: func(r *http.Request, _ []*http.Request) error {
		if strings.HasPrefix(r.URL.String(), redirect) {
			landed = r.URL
			return http.ErrUseLastResponse // the client's callback: not followed
		}
		return nil
	}}
	verifier := randomID() + randomID()
	sum := sha256.Sum256([]byte(verifier))
	state := randomID()
	q := url.Values{"client_id": {clientID}, "redirect_uri": {redirect}, "response_type": {"code"}, "scope": {"openid"},
		"state": {state}, "code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, issuer+"/authorize?"+q.Encode(), nil)
	resp, err := hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("authorize: %w", err)
	}
	form, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	id := resp.Request.URL.Query().Get("id")
	if resp.StatusCode != http.StatusOK || id == "" {
		return "", fmt.Errorf("authorize: %s: %.300s", resp.Status, form)
	}
	req, _ = http.NewRequestWithContext(ctx, http.MethodPost, issuer+"/login",
		strings.NewReader(url.Values{"id": {id}, "username": {user}, "password": {password}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if resp, err = hc.Do(req); err != nil {
		return "", fmt.Errorf("login: %w", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if landed == nil {
		return "", fmt.Errorf("login: %s: %.300s", resp.Status, body)
	}
	if landed.Query().Get("state") != state || landed.Query().Get("code") == "" {
		return "", fmt.Errorf("login: the provider answered %s", landed.Query().Encode())
	}
	req, _ = http.NewRequestWithContext(ctx, http.MethodPost, issuer+"/oauth/token", strings.NewReader(url.Values{
		"grant_type": {"authorization_code"}, "code": {landed.Query().Get("code")}, "redirect_uri": {redirect},
		"code_verifier": {verifier}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(secret))
	if resp, err = hc.Do(req); err != nil {
		return "", fmt.Errorf("token: %w", err)
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil {
		return "", fmt.Errorf("token: %s: %w", resp.Status, err)
	}
	if tok.AccessToken == "" {
		return "", errors.New("token: " + tok.Error + ": " + tok.Description)
	}
	return tok.AccessToken, nil
}
