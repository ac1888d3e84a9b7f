# The warm start of the Python clients (harness/src/probe/warm.rs). Run as
# `python3 -c THIS MODULE...`: imports the modules once, then reads requests, a JSON
# object a line on stdin, and forks a child per request. The child enters the request's
# network namespace, takes its stdin, stdout, stderr and environment, and runs the
# client's own entry script as `__main__`, as `python3 SCRIPT ARGS` would; it ends as
# that process would (its exit code, or a traceback and 1). Each ended child is
# reported on stdout as {"id": ID, "status": WAIT_STATUS}. At the end of stdin the
# children are killed and this ends.
import ctypes
import gc
import json
import os
import runpy
import selectors
import signal
import sys

CLONE_NEWNET = 0x40000000


def child(request, before, imported):
    libc = ctypes.CDLL(None, use_errno=True)
    netns = os.open(request["netns"], os.O_RDONLY | os.O_CLOEXEC)
    if libc.setns(netns, CLONE_NEWNET) != 0:
        message = f"imdsh-warm: entering {request['netns']}: {os.strerror(ctypes.get_errno())}\n"
        err = os.open(request["stderr"], os.O_WRONLY)
        os.write(err, message.encode())
        os._exit(127)
    entered = os.fstat(netns).st_ino == os.stat("/proc/self/ns/net").st_ino
    os.close(netns)
    if not entered:
        os.write(2, f"imdsh-warm: not in {request['netns']} after entering it\n".encode())
        os._exit(127)
    for fd, path, flags in (
        (0, os.devnull, os.O_RDONLY),
        (1, request["stdout"], os.O_WRONLY),
        (2, request["stderr"], os.O_WRONLY),
    ):
        opened = os.open(path, flags)
        os.dup2(opened, fd)
        os.close(opened)
    # What the imports did to the environment, they would have done to the request's
    # where it held what this process held before them.
    env = dict(request["env"])
    for name, value in imported.items():
        if env.get(name) == before.get(name):
            env[name] = value
    os.environ.clear()
    os.environ.update(env)
    script = request["program"]
    sys.argv = [script, *request["args"]]
    sys.path[0] = os.path.dirname(os.path.abspath(script))
    runpy.run_path(script, run_name="__main__")
    sys.exit(0)


def main():
    before = dict(os.environ)
    for module in sys.argv[1:]:
        __import__(module)
    imported = {k: v for k, v in os.environ.items() if before.get(k) != v}
    # What the imports made lives as long as any child: the children's collections
    # leave it alone instead of walking (and so copying) all of it.
    gc.freeze()
    report = os.dup(1)
    os.set_inheritable(report, False)
    selector = selectors.DefaultSelector()
    selector.register(0, selectors.EVENT_READ, None)
    running = {}
    pending = b""
    os.write(report, b'{"ready": true}\n')
    while True:
        for key, _ in selector.select():
            if key.data is not None:
                pid, rid = key.data
                _, status = os.waitpid(pid, 0)
                selector.unregister(key.fd)
                os.close(key.fd)
                del running[key.fd]
                os.write(report, json.dumps({"id": rid, "status": status}).encode() + b"\n")
                continue
            chunk = os.read(0, 1 << 16)
            if not chunk:
                for pid, _ in running.values():
                    try:
                        os.kill(pid, signal.SIGKILL)
                        os.waitpid(pid, 0)
                    except OSError:
                        pass
                os._exit(0)
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                request = json.loads(line)
                pid = os.fork()
                if pid == 0:
                    selector.close()
                    for fd in [report, *running]:
                        os.close(fd)
                    child(request, before, imported)
                pidfd = os.pidfd_open(pid)
                running[pidfd] = (pid, request["id"])
                selector.register(pidfd, selectors.EVENT_READ, (pid, request["id"]))


main()
