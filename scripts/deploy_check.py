"""What `make deploy` would upload, uploaded to the AWS emulator's S3 and checked.

Usage (scripts/deploy.sh check runs it under scripts/test-env.sh, which starts moto on
loopback and sets PROVISYNC_TEST_MOTO):

    python deploy_check.py infra/.aws-sam/build/template.yaml

1. `sam package` of the built template (the one `make deploy` deploys) to a bucket of the
   emulator's S3: every function's code is zipped and uploaded exactly as a deploy would.
2. Each function's uploaded zip is downloaded and checked: a `bootstrap` at its root, an
   executable, stripped, 64-bit little-endian AArch64 ELF, identical to the built one, and
   nothing else of size in the zip.
3. A table of the artefacts and their sizes. Exit status 1 on any failure.
"""

import hashlib
import json
import os
import struct
import subprocess
import sys
import tempfile
import zipfile
from urllib.parse import urlparse

import boto3
import yaml  # installed with aws-sam-cli

FUNCTIONS = 5
# Anything else in a zip must be smaller than this (there should be nothing).
SMALL = 1024
EM_AARCH64 = 0xB7


def elf_facts(data):
    """(machine, 64-bit little-endian, section names) of an ELF image."""
    if data[:4] != b"\x7fELF":
        raise ValueError("not an ELF file")
    is_64_le = data[4] == 2 and data[5] == 1
    if not is_64_le:
        return struct.unpack_from("<H", data, 18)[0], False, set()
    machine = struct.unpack_from("<H", data, 18)[0]
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    headers = [shoff + i * shentsize for i in range(shnum)]
    strtab = headers[shstrndx] if shnum else None
    names = set()
    if strtab is not None:
        str_off = struct.unpack_from("<Q", data, strtab + 0x18)[0]
        for h in headers:
            name_off = struct.unpack_from("<I", data, h)[0]
            end = data.index(b"\0", str_off + name_off)
            names.add(data[str_off + name_off : end].decode("ascii", "replace"))
    return machine, True, names


def mib(n):
    return f"{n / (1024 * 1024):.2f} MiB"


def main():
    built_template = os.path.abspath(sys.argv[1])
    built_dir = os.path.dirname(built_template)
    endpoint = os.environ["PROVISYNC_TEST_MOTO"]
    region = os.environ.get("AWS_REGION", "us-east-1")
    bucket = "provisync-deploy-check"
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name=region)
    s3.create_bucket(Bucket=bucket)

    class Loader(yaml.SafeLoader):
        pass

    # CloudFormation tags (!Ref, !GetAtt, ...): their values do not matter here.
    Loader.add_multi_constructor("!", lambda loader, tag, node: None)
    with open(built_template) as f:
        built = yaml.load(f, Loader=Loader)
    built_code = {
        name: os.path.join(built_dir, r["Properties"]["CodeUri"])
        for name, r in built["Resources"].items()
        if r["Type"] == "AWS::Serverless::Function"
    }

    packaged = os.path.join(tempfile.mkdtemp(), "packaged.json")
    env = dict(os.environ, AWS_ENDPOINT_URL=endpoint, SAM_CLI_TELEMETRY="0")
    # Its upload progress is noise here: shown only if it fails.
    done = subprocess.run(
        [
            "sam", "package",
            "--template-file", built_template,
            "--s3-bucket", bucket,
            "--output-template-file", packaged,
            "--use-json",
            "--region", region,
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        print(done.stdout, done.stderr, sep="\n", file=sys.stderr)
        sys.exit(f"sam package failed (exit status {done.returncode})")
    with open(packaged) as f:
        template = json.load(f)

    failures = []
    rows = []
    functions = {
        name: r
        for name, r in template["Resources"].items()
        if r["Type"] == "AWS::Serverless::Function"
    }
    if len(functions) != FUNCTIONS:
        failures.append(f"{len(functions)} functions in the template, {FUNCTIONS} expected")
    for name, r in sorted(functions.items()):
        uri = r["Properties"]["CodeUri"]
        url = urlparse(uri)
        if url.scheme != "s3":
            failures.append(f"{name}: CodeUri {uri} is not an uploaded artefact")
            continue
        obj = s3.get_object(Bucket=url.netloc, Key=url.path.lstrip("/"))["Body"].read()
        zpath = os.path.join(tempfile.mkdtemp(), "code.zip")
        with open(zpath, "wb") as f:
            f.write(obj)
        with zipfile.ZipFile(zpath) as z:
            entries = z.infolist()
            boot = next((e for e in entries if e.filename == "bootstrap"), None)
            if boot is None:
                failures.append(f"{name}: no bootstrap at the root of {uri}: {[e.filename for e in entries]}")
                continue
            others = [e for e in entries if e is not boot and not e.is_dir()]
            large = [f"{e.filename} ({e.file_size} B)" for e in others if e.file_size >= SMALL]
            if large:
                failures.append(f"{name}: more than the bootstrap: {large}")
            data = z.read(boot)
            mode = (boot.external_attr >> 16) & 0o777
        if not mode & 0o111:
            failures.append(f"{name}: bootstrap is not executable (mode {oct(mode)})")
        try:
            machine, is_64_le, sections = elf_facts(data)
        except ValueError as e:
            failures.append(f"{name}: bootstrap: {e}")
            continue
        if machine != EM_AARCH64 or not is_64_le:
            failures.append(f"{name}: bootstrap is not 64-bit little-endian AArch64 (machine {machine:#x})")
        unstripped = sorted(s for s in sections if s == ".symtab" or s.startswith(".debug"))
        if unstripped:
            failures.append(f"{name}: bootstrap is not stripped: {unstripped}")
        local = os.path.join(built_code.get(name, ""), "bootstrap")
        if not os.path.exists(local) or hashlib.sha256(open(local, "rb").read()).digest() != hashlib.sha256(data).digest():
            failures.append(f"{name}: the uploaded bootstrap is not the built one ({local})")
        rows.append(
            (
                name,
                "aarch64" if machine == EM_AARCH64 else hex(machine),
                "yes" if not unstripped else "NO",
                len(data),
                len(obj),
                len(others),
            )
        )

    print()
    print(f"sam package -> s3://{bucket} on {endpoint} (the emulator's S3)")
    print(f"{'function':<24} {'arch':<8} {'stripped':<9} {'bootstrap':>22} {'zip':>22} {'other files':>11}")
    for name, arch, stripped, size, zsize, others in rows:
        print(f"{name:<24} {arch:<8} {stripped:<9} {size:>10} B {mib(size):>9} {zsize:>10} B {mib(zsize):>9} {others:>11}")
    if failures:
        print("\nFAILED:")
        for f in failures:
            print(f"  - {f}")
        sys.exit(1)
    print(f"\nok: {len(rows)} artefacts, each an executable, stripped aarch64 bootstrap and nothing else")


if __name__ == "__main__":
    main()
