// Command checkmanifests builds Sluice's kustomizations with kustomize's
// own library (what `kustomize build` runs) and decodes every resource
// into the Kubernetes API's Go types with unknown fields refused, so that
// a misspelt field, a wrong type or an unknown kind fails offline. (The
// machines here reach no schema registry, which kubeconform needs: it
// ships no Kubernetes schemas of its own.) It also holds every workload to
// what Sluice's deployment promises: probes, resource requests, non-root,
// a read-only root file system, mutual TLS.
//
//	go run ./checkmanifests ../../deploy/k8s/overlays/production ...
package main

import (
	"fmt"
	"os"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

func main() {
	failed := false
	for _, dir := range os.Args[1:] {
		n, errs := check(dir)
		for _, err := range errs {
			failed = true
			fmt.Fprintf(os.Stderr, "%s: %v\n", dir, err)
		}
		fmt.Printf("%s: %d resources checked\n", dir, n)
	}
	if failed || len(os.Args) < 2 {
		os.Exit(1)
	}
}

func check(dir string) (int, []error) {
	resMap, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return 0, []error{fmt.Errorf("kustomize build: %w", err)}
	}
	var errs []error
	kinds := map[string]int{}
	for _, r := range resMap.Resources() {
		b, err := r.AsYAML()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		id := r.GetKind() + "/" + r.GetName()
		kinds[r.GetKind()]++
		var obj any
		switch r.GetKind() {
		case "Deployment":
			obj = &appsv1.Deployment{}
		case "Service":
			obj = &corev1.Service{}
		case "ServiceAccount":
			obj = &corev1.ServiceAccount{}
		case "ConfigMap":
			obj = &corev1.ConfigMap{}
		case "PodDisruptionBudget":
			obj = &policyv1.PodDisruptionBudget{}
		case "HorizontalPodAutoscaler":
			obj = &autoscalingv2.HorizontalPodAutoscaler{}
		case "NetworkPolicy":
			obj = &networkingv1.NetworkPolicy{}
		default:
			errs = append(errs, fmt.Errorf("%s: a kind this checker does not know", id))
			continue
		}
		if err := yaml.UnmarshalStrict(b, obj); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", id, err))
			continue
		}
		if d, ok := obj.(*appsv1.Deployment); ok {
			errs = append(errs, workload(id, d)...)
		}
	}
	for _, k := range []string{"Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler", "NetworkPolicy", "ConfigMap"} {
		if kinds[k] == 0 {
			errs = append(errs, fmt.Errorf("no %s", k))
		}
	}
	return len(resMap.Resources()), errs
}

// workload holds a Deployment to the deployment's promises.
func workload(id string, d *appsv1.Deployment) []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(id+": "+format, args...)) }
	pod := d.Spec.Template.Spec
	if pod.SecurityContext == nil || pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot {
		bad("the pod may run as root")
	}
	if d.Spec.Selector == nil || len(d.Spec.Selector.MatchLabels) == 0 {
		bad("no selector")
	}
	for _, c := range pod.Containers {
		if c.ReadinessProbe == nil || c.LivenessProbe == nil {
			bad("container %s lacks a readiness or liveness probe", c.Name)
		}
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
			bad("container %s lacks CPU and memory requests or a memory limit", c.Name)
		}
		if c.SecurityContext == nil || c.SecurityContext.ReadOnlyRootFilesystem == nil || !*c.SecurityContext.ReadOnlyRootFilesystem {
			bad("container %s has a writable root file system", c.Name)
		}
		tls := 0
		for _, e := range c.Env {
			if strings.HasPrefix(e.Name, "SLUICE_TLS_") {
				tls++
			}
		}
		if tls != 3 {
			bad("container %s does not configure mutual TLS (SLUICE_TLS_CERT, _KEY, _CA)", c.Name)
		}
		if strings.Contains(c.Image, ":latest") || !strings.Contains(c.Image, ":") {
			bad("container %s runs an unpinned image %q", c.Name, c.Image)
		}
	}
	return errs
}
