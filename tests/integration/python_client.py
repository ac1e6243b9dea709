#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""The official Kubernetes Python client (Debian's python3-kubernetes) against a kflex hub.

Usage: python_client.py KUBECONFIG CACHE_DIR NAME

Lists, creates, gets and deletes the ControlPlane NAME through CustomObjectsApi, resolves kind
ControlPlane by discovery with the dynamic client (its discovery cache in CACHE_DIR), and asks
/api and /apis through the client's transport with the Accept headers kubectl sends, checking
what comes back on the wire. Prints "ok: STEP" after each step; at the first step that goes wrong
it prints why on stderr and exits 1.
"""

import json
import os
import sys
import time

from kubernetes import client, config, dynamic
from kubernetes.client.rest import ApiException

GROUP = "tenancy.kflex.kubestellar.org"
VERSION = "v1alpha1"
PLURAL = "controlplanes"
AGGREGATED = "application/json;g=apidiscovery.k8s.io;v={};as=APIGroupDiscoveryList"


def fail(step, why):
    print(f"FAILED: {step}: {why}", file=sys.stderr)
    sys.exit(1)


def check(step, condition, why):
    if not condition:
        fail(step, why)
    print(f"ok: {step}", flush=True)


def status_of(call):
    """The HTTP status an API call ends with: 200 when it succeeds."""
    try:
        call()
    except ApiException as e:
        return e.status
    return 200


def discovery(api_client, path, accept):
    """GET path with this Accept: (Content-Type, Vary, body as a dict)."""
    response = api_client.call_api(path, "GET", header_params={"Accept": accept},
                                   auth_settings=["BearerToken"], _preload_content=False,
                                   _return_http_data_only=True)
    headers = response.headers
    return headers.get("Content-Type"), headers.get("Vary"), json.loads(response.data)


def check_discovery(api_client):
    v2, v2beta1 = AGGREGATED.format("v2"), AGGREGATED.format("v2beta1")
    # kubectl 1.27-1.29, kubectl 1.30 and later, and a client that wants no aggregation.
    asks = [(v2beta1 + ",application/json", "v2beta1"),
            (v2 + "," + v2beta1 + ",application/json", "v2"),
            ("application/json", None)]
    for accept, version in asks:
        for path in ("/api", "/apis"):
            content_type, vary, body = discovery(api_client, path, accept)
            got = (content_type, body.get("kind"), body.get("apiVersion"))
            if version:
                want = (AGGREGATED.format(version), "APIGroupDiscoveryList",
                        "apidiscovery.k8s.io/" + version)
            else:
                kind = "APIVersions" if path == "/api" else "APIGroupList"
                want = ("application/json", kind, body.get("apiVersion"))
            if got != want or vary != "Accept":
                fail("negotiated discovery",
                     f"{path} with Accept {accept}: got {got}, Vary {vary}; want {want}")
    print("ok: negotiated discovery", flush=True)


def main():
    kubeconfig, cache_dir, name = sys.argv[1:4]
    api_client = config.new_client_from_config(config_file=kubeconfig)
    custom = client.CustomObjectsApi(api_client)

    listed = custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)
    names = [item["metadata"]["name"] for item in listed.get("items", [])]
    check("list", listed.get("kind") == "ControlPlaneList" and name not in names,
          f"kind {listed.get('kind')}, names {names}")

    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ControlPlane",
        "metadata": {"name": name, "labels": {"client": "python"}},
        "spec": {"type": "k3s"},
    }
    created = custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, body)
    uid = created.get("metadata", {}).get("uid", "")
    check("create", created.get("kind") == "ControlPlane" and uid, f"created {created}")

    got = custom.get_cluster_custom_object(GROUP, VERSION, PLURAL, name)
    check("get", got["metadata"]["uid"] == uid and got["spec"]["type"] == "k3s", f"got {got}")

    again = status_of(lambda: custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, body))
    check("create again is a conflict", again == 409, f"status {again}")

    dyn = dynamic.DynamicClient(api_client, cache_file=os.path.join(cache_dir, "discovery.json"))
    resource = dyn.resources.get(api_version=f"{GROUP}/{VERSION}", kind="ControlPlane")
    short_names = resource.short_names or []
    check("discover kind ControlPlane",
          resource.name == PLURAL and not resource.namespaced and "cp" in short_names,
          f"resource {resource.name}, namespaced {resource.namespaced}, shortNames {short_names}")

    obj = resource.get(name=name)
    check("dynamic get", obj.metadata.uid == uid and obj.spec.type == "k3s", f"object {obj}")
    selected = resource.get(label_selector="client=python")
    check("dynamic list by label", [item.metadata.name for item in selected.items] == [name],
          f"items {selected.items}")

    check_discovery(api_client)

    custom.delete_cluster_custom_object(GROUP, VERSION, PLURAL, name)
    # The hub drops its own finalizer at once for a control plane no agent runs, on its own time.
    deadline = time.monotonic() + 20
    gone = status_of(lambda: custom.get_cluster_custom_object(GROUP, VERSION, PLURAL, name))
    while gone != 404 and time.monotonic() < deadline:
        time.sleep(0.2)
        gone = status_of(lambda: custom.get_cluster_custom_object(GROUP, VERSION, PLURAL, name))
    check("delete", gone == 404, f"get after delete: status {gone}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
