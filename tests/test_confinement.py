"""Inputs and outputs confined: input files inside the workflow's folder (or --allow-path), regular and bounded;
URLs to public addresses only (also after redirects); bounded names; --out problems as clear errors."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import REPO, WORKFLOWS, latest_run, manifest, run_cli, run_subprocess, write_workflow
from PIL import Image

import runner

ROOM = WORKFLOWS / "inputs" / "room.png"
POSIX = os.name == "posix"


def cli(capsys, *args) -> tuple[int, str]:
    code = run_cli(*args)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def nodes_workflow(folder: Path, nodes: str, name: str = "wf.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return write_workflow(folder, name, "version: 1\nnodes:\n" + nodes)


# ------------------------------------------------------------------ input files: where they may come from
def test_absolute_paths_dotdot_and_symlinks_out_of_the_folder_are_refused_until_allowed(tmp_path, capsys):
    elsewhere = tmp_path / "private"
    elsewhere.mkdir()
    (elsewhere / "secret.png").write_bytes(ROOM.read_bytes())
    folder = tmp_path / "shared"
    folder.mkdir()
    (folder / "innocent.png").symlink_to(elsewhere / "secret.png")
    workflow = nodes_workflow(folder, f"  a: {{type: load_image, path: {elsewhere / 'secret.png'}}}\n"
                                      "  b: {type: load_image, path: ../private/secret.png}\n"
                                      "  c: {type: load_image, path: innocent.png}\n"
                                      "  keep: {type: save_image, images: [$a, $b, $c]}\n")
    for command in (["validate"], ["run", "--dry-run"]):
        code, text = cli(capsys, *command, workflow)
        assert code == 2, text
        assert f"wf.yaml:3:25: nodes.a.path: {elsewhere / 'secret.png'} is outside the workflow's folder {folder}" in text
        assert f"wf.yaml:4:25: nodes.b.path: ../private/secret.png (resolves to {elsewhere / 'secret.png'}) is outside" in text
        assert f"wf.yaml:5:25: nodes.c.path: innocent.png (resolves to {elsewhere / 'secret.png'}) is outside" in text
        assert f"fix: put the file beside the workflow, or allow its folder with --allow-path {elsewhere}" in text
        assert "Traceback" not in text
    # --set cannot get round it either
    code, text = cli(capsys, "validate", workflow, "--set", "nodes.a.path=/etc/hostname", "--allow-path", elsewhere)
    assert code == 2 and "--set nodes.a.path=/etc/hostname: nodes.a.path: /etc/hostname is outside" in text
    assert f"or the allowed folders {elsewhere}" in text
    # widened on purpose: the run reads them, and the manifest says so
    code, text = cli(capsys, "run", workflow, "--allow-path", elsewhere, "--out", tmp_path / "out", "--plain")
    assert code == 0, text
    record = manifest(latest_run(tmp_path / "out", "wf"))
    assert record["allow_paths"] == [str(elsewhere)] and record["allow_private_urls"] is False
    assert set(record["nodes"]["a"]["input_files"]) == {str(elsewhere / "secret.png")}


def test_allow_path_must_name_a_folder(tmp_path, capsys):
    workflow = nodes_workflow(tmp_path / "wf", "  a: {type: load_image, path: in.png}\n")
    code, text = cli(capsys, "validate", workflow, "--allow-path", tmp_path / "missing", "--allow-path", workflow)
    assert code == 2
    assert f"error: --allow-path: {tmp_path / 'missing'} does not exist: --allow-path takes a folder" in text
    assert f"error: --allow-path: {workflow} is not a folder" in text


def test_the_python_api_takes_allow_paths_on_the_session_and_per_run(tmp_path):
    elsewhere = tmp_path / "photos"
    elsewhere.mkdir()
    (elsewhere / "room.png").write_bytes(ROOM.read_bytes())
    workflow = nodes_workflow(tmp_path / "wf", f"  a: {{type: load_image, path: {elsewhere / 'room.png'}}}\n"
                                               "  keep: {type: save_image, image: $a}\n")
    with runner.Session(out=tmp_path / "out") as session:
        with pytest.raises(runner.WorkflowError, match="is outside the workflow's folder"):
            session.run(workflow)
        run = session.run(workflow, allow_paths=[elsewhere])
        assert run.status == "ok" and run.manifest["allow_paths"] == [str(elsewhere)]
    with runner.Session(out=tmp_path / "out", allow_paths=[elsewhere]) as session:
        assert session.run(workflow).status == "ok"


def test_every_input_file_field_is_confined_not_only_load_image(tmp_path):
    """The rule follows the InputFile marker: a node type of any name with such a field gets it."""
    from pydantic import Field

    from runner.language.fields import Fields, FilePath
    from runner.language.workflow import load_workflow
    from runner.nodes.base import NodeType

    class ReadsALut(Fields):
        lut: FilePath = Field(..., description="a colour look-up table")

    catalogue = {"apply_lut": NodeType("apply_lut", ReadsALut, {"image": "image"}, 1, "apply a LUT", lambda *a: {})}
    workflow = tmp_path / "wf" / "lut.yaml"
    workflow.parent.mkdir()
    (workflow.parent / "ok.cube").write_text("LUT_3D_SIZE 2\n")
    workflow.write_text("version: 1\nnodes:\n  grade: {type: apply_lut, lut: ../../etc/hostname}\n")
    with pytest.raises(runner.WorkflowError) as problems:
        load_workflow(workflow, catalogue=catalogue)
    assert "lut.yaml:3:28: nodes.grade.lut: ../../etc/hostname (resolves to" in str(problems.value)
    workflow.write_text("version: 1\nnodes:\n  grade: {type: apply_lut, lut: ok.cube}\n")
    assert load_workflow(workflow, catalogue=catalogue).nodes["grade"].fields.lut == "ok.cube"


# ------------------------------------------------------------------ input files: what may be read
@pytest.mark.skipif(not POSIX, reason="FIFOs and /dev are POSIX")
def test_fifos_devices_and_folders_are_refused_at_validation_without_blocking(tmp_path):
    folder = tmp_path / "wf"
    folder.mkdir()
    os.mkfifo(folder / "pipe.png")
    (folder / "folder.png").mkdir()
    (folder / "zero.png").symlink_to("/dev/zero")
    workflow = nodes_workflow(folder, "  a: {type: load_image, path: pipe.png}\n"
                                      "  b: {type: load_image, path: folder.png}\n"
                                      "  c: {type: load_image, path: zero.png}\n"
                                      "  d: {type: load_image, path: /dev/urandom}\n")
    for command in (["validate"], ["run", "--dry-run"]):  # a subprocess: reading the FIFO would block for ever
        started = time.perf_counter()
        result = run_subprocess(*command, workflow, "--allow-path", "/dev", timeout=120)
        assert time.perf_counter() - started < 60
        assert result.returncode == 2, result.stderr
        err = result.stderr
        assert "wf.yaml:3:25: nodes.a.path: pipe.png is a FIFO (named pipe): only regular files are read" in err
        assert "wf.yaml:4:25: nodes.b.path: folder.png is a folder: only regular files are read" in err
        assert "wf.yaml:5:25: nodes.c.path: zero.png is a character device: only regular files are read" in err
        assert "wf.yaml:6:25: nodes.d.path: /dev/urandom is a character device" in err
        assert "fix: point the path at an image file" in err and "Traceback" not in err
    # without --allow-path /dev the devices are outside the folder in the first place
    result = run_subprocess("validate", workflow, timeout=120)
    assert "nodes.c.path: zero.png (resolves to /dev/zero) is outside the workflow's folder" in result.stderr


def test_a_huge_input_file_is_refused_by_stat_before_hashing(tmp_path, capsys):
    folder = tmp_path / "wf"
    workflow = nodes_workflow(folder, "  a: {type: load_image, path: huge.png}\n  keep: {type: save_image, image: $a}\n")
    with open(folder / "huge.png", "wb") as handle:  # sparse: 8 GB that take no disk space
        handle.truncate(8 * 1024**3)
    for command in (["validate"], ["run", "--dry-run"]):
        started = time.perf_counter()
        code, text = cli(capsys, *command, workflow)
        assert time.perf_counter() - started < 5  # hashing 8 GB takes half a minute
        assert code == 2 and "wf.yaml:3:25: nodes.a.path: huge.png is 8192 MiB, more than the limit of 256 MiB" in text
        assert "raise RUNNER_MAX_INPUT_BYTES" in text


def test_a_nul_in_a_path_is_a_located_error(tmp_path, capsys):
    workflow = nodes_workflow(tmp_path / "wf", '  a: {type: load_image, path: "in\\0.png"}\n')
    for command in (["validate"], ["run", "--dry-run"]):
        code, text = cli(capsys, *command, workflow)
        # the YAML reader refuses the escape itself, at its position (the path check behind it is the second line)
        assert code == 2 and "wf.yaml:3:31: text holds a NUL character" in text
        assert "Traceback" not in text


def test_a_symlink_loop_as_an_input_is_a_located_error(tmp_path, capsys):
    workflow = nodes_workflow(tmp_path / "wf", "  a: {type: load_image, path: loop1}\n")
    (tmp_path / "wf" / "loop1").symlink_to(tmp_path / "wf" / "loop2")
    (tmp_path / "wf" / "loop2").symlink_to(tmp_path / "wf" / "loop1")
    for command in (["validate"], ["run", "--dry-run"]):
        code, text = cli(capsys, *command, workflow)
        assert code == 2 and "wf.yaml:3:25: nodes.a.path: the path loop1 cannot be followed: Symlink loop" in text, text
        assert "Traceback" not in text


def test_images_above_the_input_pixel_bound_are_a_node_error(tmp_path, capsys):
    folder = tmp_path / "wf"
    folder.mkdir()
    # one bit per pixel: a few kB on disk, 169 MP (0.5 GB as RGB) and 400 MP once decoded
    Image.new("1", (13000, 13000)).save(folder / "big.png")
    Image.new("1", (20000, 20000)).save(folder / "bigger.png")
    workflow = nodes_workflow(folder, "  a: {type: load_image, path: big.png}\n")
    code, text = cli(capsys, "run", workflow, "--out", tmp_path / "out", "--plain")
    assert code == 1, text
    assert ("node 'a' (load_image) failed: NodeInputError: big.png is 13000 x 13000 = 169 MP, more than the limit of "
            "67 MP for an input image: make it smaller, or raise RUNNER_MAX_INPUT_PIXELS") in text
    code, text = cli(capsys, "run", workflow, "--out", tmp_path / "out", "--plain", "--set", "nodes.a.path=bigger.png")
    assert code == 1 and "bigger.png is 400 MP, more than the limit of 67 MP for an input image" in text
    assert "Traceback" not in text


# ------------------------------------------------------------------ names of what a run writes
def test_long_save_names_and_node_ids_are_located_errors(tmp_path, capsys):
    long_name = "n" * 300 + ".png"
    long_id = "x" * 300
    workflow = nodes_workflow(tmp_path / "wf", "  a: {type: load_image, path: in.png}\n"
                                               f"  s: {{type: save_image, image: $a, name: {long_name}}}\n"
                                               f"  {long_id}: {{type: save_image, image: $a}}\n")
    code, text = cli(capsys, "run", workflow, "--out", tmp_path / "out")
    assert code == 2, text
    assert "wf.yaml:4:36: nodes.s.name: String should have at most 100 characters" in text
    assert "file name in the run folder (.png, no folders, at most 100 characters)" in text
    assert f"wf.yaml:5:3: nodes.{long_id}: node id 'xxxxxxxxxxxxxxxxxxxxxxxx...' is 300 characters long; ids are at most 100" in text
    assert "Traceback" not in text and not (tmp_path / "out").exists()


def test_two_nodes_saving_the_same_file_are_an_error_naming_both(tmp_path, capsys):
    workflow = nodes_workflow(tmp_path / "wf", "  a: {type: load_image, path: in.png}\n"
                                               "  first: {type: save_image, image: $a, name: final.png}\n"
                                               "  second: {type: save_image, image: $a, name: Final.png}\n"
                                               "  pair: {type: save_image, images: [$a, $a], name: pair.png}\n"
                                               "  one: {type: save_image, image: $a, name: pair_1.png}\n"
                                               "  final: {type: save_image, image: $a}\n")
    code, text = cli(capsys, "validate", workflow)
    assert code == 2, text
    assert ("wf.yaml:5:41: nodes.second.name: nodes 'first' and 'second' both write Final.png into the run folder "
            "('first' writes final.png): the second would overwrite the first") in text
    assert "nodes 'pair' and 'one' both write pair_1.png into the run folder ('pair' writes pair_0.png, pair_1.png, ...)" in text
    assert "wf.yaml:8:3: nodes.final: nodes 'first' and 'final' both write final.png (the default name, from its id)" in text
    assert "3 problems found" in text


# ------------------------------------------------------------------ URLs
class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path.startswith("/to-metadata"):
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data/iam/security-credentials/")
            self.end_headers()
            return
        super().do_GET()


@pytest.fixture
def http_root(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    (root / "room.png").write_bytes(ROOM.read_bytes())
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a, **k: _Handler(*a, directory=str(root), **k))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_urls_to_this_machine_are_refused_unless_allowed(tmp_path, http_root, capsys):
    workflow = nodes_workflow(tmp_path / "wf", f"  a: {{type: load_image, url: '{http_root}/room.png'}}\n"
                                               "  keep: {type: save_image, image: $a}\n")
    code, text = cli(capsys, "run", workflow, "--out", tmp_path / "out", "--plain")
    assert code == 1
    assert (f"AddressRefused: {http_root}/room.png: 127.0.0.1 is a loopback address (this machine): runner fetches "
            "only from public addresses; to allow private ones, pass --allow-private-urls") in text
    code, text = cli(capsys, "run", workflow, "--out", tmp_path / "out", "--plain", "--allow-private-urls")
    assert code == 0, text
    run_dir = latest_run(tmp_path / "out", "wf")
    assert Image.open(run_dir / "keep.png").size == (64, 64) and manifest(run_dir)["allow_private_urls"] is True


def test_a_redirect_from_an_allowed_host_to_the_metadata_address_is_refused_before_connecting(tmp_path, http_root):
    workflow = nodes_workflow(tmp_path / "wf", f"  a: {{type: load_image, url: '{http_root}/to-metadata'}}\n")
    # the test server is on 127.0.0.1: allow that network alone (a real option: a LAN image server, say)
    with runner.Session(out=tmp_path / "out", allow_private_urls=["127.0.0.0/8"]) as session:
        started = time.perf_counter()
        run = session.run(workflow)
    assert run.status == "failed" and run.manifest["allow_private_urls"] == ["127.0.0.0/8"]
    assert (f"{http_root}/to-metadata redirects to http://169.254.169.254/latest/meta-data/iam/security-credentials/: "
            "169.254.169.254 is a cloud metadata address") in run.error
    assert time.perf_counter() - started < 10  # refused, not a connection attempt waiting for its timeout
    with pytest.raises(runner.CommandError, match="allow_private_urls: .*does not appear to be an IPv4 or IPv6 network"):
        runner.Session(out=tmp_path / "out", allow_private_urls=["not-a-network"])


@pytest.mark.parametrize("host, reason", [
    ("169.254.169.254", "a cloud metadata address"),
    ("fd00:ec2::254", "a cloud metadata address"),
    ("::ffff:169.254.169.254", "a cloud metadata address"),
    ("168.63.129.16", "a cloud metadata address"),
    ("127.0.0.1", "a loopback address (this machine)"),
    ("::1", "a loopback address (this machine)"),
    ("169.254.1.1", "a link-local address"),
    ("fe80::1", "a link-local address"),
    ("10.1.2.3", "a private address"),
    ("192.168.0.10", "a private address"),
    ("fc00::1", "a private address"),
    ("100.64.0.1", "not a globally routable address"),
    ("224.0.0.1", "a multicast address"),
    ("0.0.0.0", "the unspecified address"),
    ("240.0.0.1", "a reserved address"),
])
def test_non_public_addresses_are_refused_by_the_address_check(host, reason):
    """getaddrinfo of a literal address needs no DNS and connects nowhere: the check alone is under test."""
    from runner.nodes.url_fetch import AddressPolicy, AddressRefused

    with pytest.raises(AddressRefused, match=f"{host} is {reason.replace('(', '[(]').replace(')', '[)]')}"):
        AddressPolicy(False).vetted(host, 80, f"http://{host}/")
    assert AddressPolicy(True).vetted(host, 80, f"http://{host}/")


def test_public_addresses_pass_and_names_are_checked_by_what_they_resolve_to():
    from runner.nodes.url_fetch import AddressPolicy, AddressRefused

    assert AddressPolicy(False).vetted("93.184.215.14", 443, "https://93.184.215.14/")[0][3][0] == "93.184.215.14"
    assert AddressPolicy(False).vetted("2606:4700::1", 443, "https://[2606:4700::1]/")
    with pytest.raises(AddressRefused, match="localhost resolves to 127.0.0.1 [(]a loopback address"):
        AddressPolicy(False).vetted("localhost", 80, "http://localhost/")
    lan = AddressPolicy(["192.168.1.0/24"])
    assert lan.vetted("192.168.1.20", 80, "")
    with pytest.raises(AddressRefused):
        lan.vetted("169.254.169.254", 80, "")


@pytest.mark.skipif(subprocess.run(["which", "openssl"], capture_output=True).returncode != 0, reason="needs openssl")
def test_https_connects_to_the_checked_address_with_the_host_name_for_sni_and_the_certificate(tmp_path, monkeypatch):
    import ssl

    from runner.nodes.url_fetch import AddressRefused, fetch

    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "2",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"], check=True, capture_output=True)
    (tmp_path / "room.png").write_bytes(ROOM.read_bytes())
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a, **k: _Handler(*a, directory=str(tmp_path), **k))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    names = []
    context.sni_callback = lambda sock, name, ctx: names.append(name)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # trust the test certificate (read by each new default context)
    try:
        assert fetch(f"https://localhost:{port}/room.png", allow=True) == ROOM.read_bytes()
        assert names == ["localhost"]  # the socket went to 127.0.0.1, the TLS layer saw the host name
        with pytest.raises(Exception, match="certificate is not valid for '127.0.0.1'"):
            fetch(f"https://127.0.0.1:{port}/room.png", allow=True)  # the certificate is still checked
        with pytest.raises(AddressRefused, match="localhost resolves to 127.0.0.1"):
            fetch(f"https://localhost:{port}/room.png")
    finally:
        server.shutdown()


# ------------------------------------------------------------------ --out
def test_out_on_a_file_is_a_clear_error_before_anything_runs(tmp_path, capsys):
    workflow = nodes_workflow(tmp_path / "wf", "  a: {type: load_image, path: in.png}\n  keep: {type: save_image, image: $a}\n")
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    for out, shown in ((blocker, f"{blocker} is a file, not a folder"),
                       (blocker / "sub", f"{blocker / 'sub'} cannot be made: {blocker} is a file, not a folder")):
        for extra in ([], ["--dry-run"], ["--seeds", "1-2"]):
            code, text = cli(capsys, "run", workflow, "--out", out, *extra)
            assert code == 2, (extra, text)
            assert f"error: --out: {shown}" in text and "choose a folder you can write to (--out DIR" in text
            assert "Traceback" not in text
    with runner.Session(out=blocker) as session:
        with pytest.raises(runner.CommandError, match="is a file, not a folder"):
            session.run(workflow)


def test_watch_checks_out_before_watching(tmp_path):
    workflow = nodes_workflow(tmp_path / "wf", "  a: {type: load_image, path: in.png}\n")
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    result = run_subprocess("watch", workflow, "--out", blocker, timeout=120)
    assert result.returncode == 2 and f"error: --out: {blocker} is a file, not a folder" in result.stderr


@pytest.mark.skipif(not POSIX or os.geteuid() == 0, reason="root may write into read-only folders")
def test_out_without_write_permission_is_a_clear_error(tmp_path, capsys):
    workflow = nodes_workflow(tmp_path / "wf", "  a: {type: load_image, path: in.png}\n")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        for out in (locked, locked / "sub"):
            code, text = cli(capsys, "run", workflow, "--out", out)
            assert code == 2 and "error: --out: cannot write into" in text and "permission denied" in text
    finally:
        locked.chmod(0o700)


def _namespace_with_tmpfs(target: Path, options: str) -> list[str] | None:
    """A command prefix running in a private mount namespace with a small tmpfs on `target` (no root needed where
    user namespaces are enabled), or None where that is not available."""
    prefix = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
              f'mount -t tmpfs -o {options} tmpfs "$0" && exec "$@"', str(target)]
    try:
        probe = subprocess.run(prefix + ["true"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return prefix if probe.returncode == 0 else None


def _noise_workflow(tmp_path: Path) -> Path:
    folder = tmp_path / "wf"
    folder.mkdir()
    Image.frombytes("RGB", (512, 512), os.urandom(512 * 512 * 3)).save(folder / "noise.png")  # ~0.8 MB: no room in 256 kB
    workflow = folder / "full.yaml"
    workflow.write_text("version: 1\nnodes:\n  n: {type: load_image, path: noise.png}\n  keep: {type: save_image, image: $n}\n")
    return workflow


def _run_on_tmpfs(tmp_path: Path, options: str, out_below: str = "", *extra: str) -> tuple[Path, subprocess.CompletedProcess]:
    """`runner run` of the noise workflow with --out on a small private tmpfs (skipped where none can be made)."""
    out = tmp_path / "mnt"
    out.mkdir()
    prefix = _namespace_with_tmpfs(out, options)
    if prefix is None:
        pytest.skip("no unprivileged mount namespace here")
    workflow = _noise_workflow(tmp_path)
    target = out / out_below if out_below else out
    result = subprocess.run(prefix + [sys.executable, "-m", "runner", "run", str(workflow), "--out", str(target), *extra],
                            capture_output=True, text=True, timeout=300, cwd=REPO)
    return out, result


def test_out_on_a_read_only_file_system_is_a_clear_error(tmp_path):
    out, result = _run_on_tmpfs(tmp_path, "ro,size=256k", "runs")
    assert result.returncode == 2, result.stderr
    assert f"error: --out: cannot write into {out / 'runs'}: it is on a read-only file system" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_full_disk_under_out_fails_the_run_without_a_traceback(tmp_path):
    _out, result = _run_on_tmpfs(tmp_path, "size=256k", "", "--plain")
    assert result.returncode == 1, result.stderr
    assert "error: node 'keep' (save_image) could not write its files into" in result.stderr
    assert "No space left on device; free some space or choose another --out" in result.stderr
    assert "Traceback" not in result.stderr


# ------------------------------------------------------------------ the flags are there
def test_the_flags_are_in_the_help(capsys):
    for command, flags in (("run", ("--allow-path DIR", "--allow-private-urls")), ("watch", ("--allow-path DIR", "--allow-private-urls")),
                           ("validate", ("--allow-path DIR",)), ("reproduce", ("--allow-path DIR", "--allow-private-urls"))):
        with pytest.raises(SystemExit):
            run_cli(command, "--help")
        text = capsys.readouterr().out
        assert all(flag in text for flag in flags), (command, text)
