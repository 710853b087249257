#!/usr/bin/env python3
"""Runs the tracker as an interactive shell's job, in a pseudo-terminal.

usage: tracker_in_pty.py TRACKER INFO DATA_DIR LOG PORT MODE
MODE background: `tracker ... &`, then `jobs`, then `kill %1`.
MODE foreground: `tracker ...` in the foreground, SIGHUP three times, then
`quit` typed.
MODE suspend: in the foreground, Ctrl-Z, `bg`, `jobs`, `fg`, `quit`.
Prints one JSON object with what happened; every wait is bounded. Kills
only the shell it started and the tracker that shell reported ($!).
"""
import json, os, pty, select, signal, socket, sys, time

tracker, info, data_dir, log, port, mode = sys.argv[1:7]
port = int(port)
out = []


def read_for(fd, seconds):
    end = time.time() + seconds
    while time.time() < end:
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            try:
                data = os.read(fd, 4096)
            except OSError:
                return
            if not data:
                return
            out.append(data.decode(errors="replace"))


def wait_for(fd, text, seconds):
    end = time.time() + seconds
    while time.time() < end:
        if text in "".join(out):
            return True
        read_for(fd, 0.2)
    return text in "".join(out)


def listening(seconds):
    end = time.time() + seconds
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


def alive(pid):
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    # A zombie is not alive: the shell reaps its jobs.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


pid, fd = pty.fork()
if pid == 0:
    os.environ["PS1"] = "$ "
    os.environ["NO_COLOR"] = "1"
    os.execvp("bash", ["bash", "--norc", "--noprofile", "-i"])

result = {}
tracker_pid = None
try:
    read_for(fd, 0.5)
    cmd = f"{tracker} {info} 1 --data-dir {data_dir} 2>{log}"
    if mode == "background":
        os.write(fd, f"{cmd} &\n".encode())
        os.write(fd, b"echo PID=$!\n")
        wait_for(fd, "PID=", 10)
        text = "".join(out)
        tracker_pid = int(text.split("PID=")[-1].split()[0])
        result["listening"] = listening(10)
        # Long enough for a read of stdin to have stopped it.
        read_for(fd, 1.5)
        os.write(fd, b"jobs; echo END-JOBS\n")
        wait_for(fd, "END-JOBS\r\n", 10)
        text = "".join(out)
        jobs = text[text.rfind("jobs; echo"):]
        result["jobs"] = jobs
        result["stopped"] = "Stopped" in text
        os.write(fd, b"kill %1\n")
        end = time.time() + 10
        while time.time() < end and alive(tracker_pid):
            read_for(fd, 0.2)
        result["ended_on_kill"] = not alive(tracker_pid)
    elif mode == "suspend":
        os.write(fd, f"{cmd}\n".encode())
        result["listening"] = listening(10)
        os.write(fd, b"\x1a")
        result["suspended"] = wait_for(fd, "Stopped", 10)
        os.write(fd, b"bg\n")
        read_for(fd, 1.5)
        os.write(fd, b"jobs; echo END-JOBS\n")
        wait_for(fd, "END-JOBS\r\n", 10)
        text = "".join(out)
        result["jobs"] = text[text.rfind("jobs; echo"):]
        # Back to the foreground, `quit` works again.
        os.write(fd, b"fg\n")
        read_for(fd, 1)
        os.write(fd, b"quit\n")
        os.write(fd, b"echo EXIT=$?\n")
        result["exited_on_quit"] = wait_for(fd, "EXIT=0", 15)
    else:
        os.write(fd, f"{cmd}\n".encode())
        result["listening"] = listening(10)
        # The shell's one child is the tracker. SIGHUPs (logged, ignored)
        # interrupt its wait for input; `quit` must still work after them.
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            children = f.read().split()
        if len(children) == 1:
            tracker_pid = int(children[0])
            for _ in range(3):
                os.kill(tracker_pid, signal.SIGHUP)
                time.sleep(0.1)
        result["hupped"] = len(children) == 1
        os.write(fd, b"quit\n")
        os.write(fd, b"echo EXIT=$?\n")
        result["exited_on_quit"] = wait_for(fd, "EXIT=0", 15)
    os.write(fd, b"exit\n")
    read_for(fd, 1)
finally:
    if tracker_pid and alive(tracker_pid):
        os.kill(tracker_pid, signal.SIGKILL)
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
    os.waitpid(pid, 0)
result["output"] = "".join(out)[-3000:]
print(json.dumps(result))
