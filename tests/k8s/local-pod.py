"""The rendered gateway Deployment of one overlay, made runnable by `podman kube play` on this
host: what differs is only what a real cluster provides and this host does not.

- the Secrets (admin token, S3 key) are dropped, with the env and mounts that use them;
- the ConfigMap's gateway.yaml is replaced by one without S3 masters, Redis or admin token
  (none of them runs here), whose public URL is the published port: iipsrv reads the sample
  images straight from the cache volume;
- the cache volume is a hostPath to the sample images;
- one replica, and the public and admin ports published on the host.

Everything else (the containers, their images, commands, environment, probes, security
contexts, the iipsrv sidecars and their ports) is the overlay's own.

    python local-pod.py RENDERED.yaml SAMPLES_DIR HTTP_PORT ADMIN_PORT > play.yaml
"""

import sys

import yaml

LOCAL_CONFIG = """\
version: 1
threads: 2
pid_file: /run/iiif-gateway/gateway.pid
upgrade_sock: /run/iiif-gateway/gateway-upgrade.sock
grace_period_seconds: 1
graceful_shutdown_timeout_seconds: 2
gateway:
  listen: 0.0.0.0:8080
  admin_listen: 0.0.0.0:9180
  public_base_url: http://127.0.0.1:{http_port}
  prefix: /iiif
  backend:
    addresses: [127.0.0.1:9000, 127.0.0.1:9001, 127.0.0.1:9002, 127.0.0.1:9003]
"""


def main(rendered, samples, http_port, admin_port):
    docs = [d for d in yaml.safe_load_all(open(rendered)) if d]
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    secrets = {d["metadata"]["name"] for d in docs if d["kind"] == "Secret"}
    deployment["spec"]["replicas"] = 1
    pod = deployment["spec"]["template"]["spec"]
    secret_volumes = {v["name"] for v in pod["volumes"] if v.get("secret", {}).get("secretName") in secrets}
    for container in pod["containers"]:
        container["env"] = [
            e for e in container.get("env", []) if "secretKeyRef" not in e.get("valueFrom", {})
        ]
        container["volumeMounts"] = [
            m for m in container.get("volumeMounts", []) if m["name"] not in secret_volumes
        ]
        for port in container.get("ports", []):
            if port["name"] == "http":
                port["hostPort"] = int(http_port)
            if port["name"] == "admin":
                port["hostPort"] = int(admin_port)
    pod["volumes"] = [v for v in pod["volumes"] if v["name"] not in secret_volumes | {"cache"}]
    pod["volumes"].append({"name": "cache", "hostPath": {"path": samples, "type": "Directory"}})
    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "iiif-gateway"},
        "data": {"gateway.yaml": LOCAL_CONFIG.format(http_port=int(http_port))},
    }
    yaml.safe_dump_all([config, deployment], sys.stdout)


if __name__ == "__main__":
    main(*sys.argv[1:])
