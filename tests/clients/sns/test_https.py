"""HTTPS push: a local TLS endpoint whose certificate is issued by a test CA that the server
trusts through SSL_CERT_FILE (the server uses the platform's trust store otherwise)."""

import json
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

from snslib import make_client, wait_until


def make_certs(d):
    def run(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem"),
        "-days", "2", "-subj", "/CN=Ferry test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(d / "leaf.key"), "-out", str(d / "leaf.csr"),
        "-subj", "/CN=127.0.0.1")
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    run("x509", "-req", "-in", str(d / "leaf.csr"), "-CA", str(d / "ca.pem"), "-CAkey", str(d / "ca.key"),
        "-CAcreateserial", "-out", str(d / "leaf.pem"), "-days", "2", "-extfile", str(d / "ext.cnf"))


def test_https_endpoint(ferry_factory, tmp_path):
    make_certs(tmp_path)
    posts = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
            posts.append((dict(self.headers), json.loads(body)))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(tmp_path / "leaf.pem"), str(tmp_path / "leaf.key"))
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        ferry = ferry_factory(doors=("http", "aws"), env={"SSL_CERT_FILE": str(tmp_path / "ca.pem")})
        sns = make_client(ferry, "sns")
        arn = sns.create_topic(Name="secure")["TopicArn"]
        url = f"https://127.0.0.1:{server.server_address[1]}/hook"
        sns.subscribe(TopicArn=arn, Protocol="https", Endpoint=url)
        assert wait_until(lambda: any(p["Type"] == "SubscriptionConfirmation" for _, p in posts), timeout_s=20)
        conf = [p for _, p in posts if p["Type"] == "SubscriptionConfirmation"][0]
        assert requests.get(conf["SubscribeURL"], timeout=10).status_code == 200
        sns.publish(TopicArn=arn, Message="over tls")
        assert wait_until(lambda: any(p.get("Message") == "over tls" for _, p in posts), timeout_s=20)
    finally:
        server.shutdown()
