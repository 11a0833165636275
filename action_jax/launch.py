"""Starts the processes of one node of a multi-process JAX job: torchrun's role, JAX's model.

    python -m action_jax.launch [--nnodes 2 --node-rank 0 --master-addr HOST --port 29500]
        [--nproc 1] [--gpus 8 | --devices-per-proc 2] [--timeout S] -- --config ... --workdir ...

JAX's model is *one process per host*, driving every accelerator it can see: the train step is
one program over a global device mesh, so a process needs no rank per GPU (PyTorch's DDP does).
`--nproc 1` (the default) is therefore the right choice on GPU machines; `--nproc N` splits the
node's GPUs evenly among N processes through `CUDA_VISIBLE_DEVICES` (one process per GPU with
N = GPUs, as MMAction2 runs): useful to mimic that layout or to isolate a faulty GPU, never faster.

`--devices-per-proc K` is the CPU mode (no accelerator, e.g. tests): every process runs on the
host CPU with K virtual devices (`JAX_PLATFORMS=cpu`,
`XLA_FLAGS=--xla_force_host_platform_device_count=K`), so N processes × K devices behave like a
small multi-host GPU cluster on one machine, collectives (gloo) included.

Each process gets `JAX_NUM_PROCESSES`, `JAX_PROCESS_ID` (`node_rank * nproc + local rank`),
`MASTER_ADDR` and `PORT`, which `action_jax.distributed.initialize` turns into
`jax.distributed.initialize`; with a single process in all nothing distributed is set. The
launcher forwards SIGTERM/SIGINT to its processes (the training loop then checkpoints and exits
0), stops the others when one fails (a process waiting in a collective for a dead peer would
otherwise hang), exits with the first failure's status, and stops everything after `--timeout`.

Collisions between two jobs on one machine: with one node and no `--port`/`PORT`, the coordinator
port is a free one picked here (MMAction2's fixed 29500 makes a second job join the first one's
rendezvous); an explicit port is checked to be free first. On node 0, the workdir is locked for
the job's lifetime (in place of action_jax.main's own lock, which its processes then skip), so a
second job pointed at the same workdir stops at once with a message instead of overwriting the
first one's checkpoints.
"""
import argparse
import fcntl
import os
import signal
import socket
import subprocess
import sys
import time

# Exit status for --timeout, as coreutils' `timeout`.
TIMEOUT_STATUS = 124


def _env_int(name: str, default: int | None) -> int | None:
    value = os.environ.get(name, '')
    return int(value) if value.strip() else default


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog='python -m action_jax.launch', description=__doc__.split('\n\n')[0],
        epilog='Everything after "--" goes to the program (action_jax.main by default). Every '
               'option defaults to the environment variable of MMAction2\'s scripts in brackets.')
    parser.add_argument('--nnodes', type=int, default=_env_int('NNODES', 1), help='[NNODES]')
    parser.add_argument('--node-rank', type=int, default=_env_int('NODE_RANK', 0),
                        help='[NODE_RANK]')
    parser.add_argument('--master-addr', default=os.environ.get('MASTER_ADDR') or '127.0.0.1',
                        help='[MASTER_ADDR] address of node 0, where process 0 runs the '
                             'coordinator')
    parser.add_argument('--port', type=int, default=_env_int('PORT', None),
                        help='[PORT] coordinator port on node 0; default 29500 with several '
                             'nodes, a free port with one')
    parser.add_argument('--nproc', type=int, default=_env_int('NPROC', None),
                        help='[NPROC] processes on this node (default: 1, or GPUS / '
                             'DEVICES_PER_PROC in CPU mode)')
    parser.add_argument('--gpus', type=int, default=_env_int('GPUS', None),
                        help='[GPUS] GPUs of this node to use (the first GPUS of '
                             'CUDA_VISIBLE_DEVICES, or 0..GPUS-1); in CPU mode the devices of '
                             'this node in all')
    parser.add_argument('--devices-per-proc', type=int,
                        default=_env_int('DEVICES_PER_PROC', None),
                        help='[DEVICES_PER_PROC] CPU mode: K virtual CPU devices per process')
    parser.add_argument('--timeout', type=float, default=_env_int('LAUNCH_TIMEOUT', None),
                        help='[LAUNCH_TIMEOUT] seconds before every process is stopped '
                             f'(exit status {TIMEOUT_STATUS})')
    parser.add_argument('--grace', type=float, default=60.0,
                        help='seconds between SIGTERM and SIGKILL when stopping processes')
    parser.add_argument('--module', default='action_jax.main', help='the program, run as -m')
    parser.add_argument('args', nargs=argparse.REMAINDER, help='-- program arguments')
    args = parser.parse_args(argv)
    if args.args and args.args[0] == '--':
        args.args = args.args[1:]
    return args


def _check_port_free(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(('', port))
        except OSError as e:
            raise SystemExit(
                f'launch: port {port} is in use ({e.strerror}): another job on this machine? '
                'Give each job its own PORT (or leave PORT unset on a single node).') from None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('', 0))
        return s.getsockname()[1]


def _visible_gpus(gpus: int | None) -> list[str] | None:
    """The GPU ids this node's job may use, or None to leave CUDA_VISIBLE_DEVICES alone."""
    visible = os.environ.get('CUDA_VISIBLE_DEVICES')
    ids = [g for g in visible.split(',') if g.strip()] if visible is not None else None
    if gpus is None:
        return ids
    if ids is None:
        return [str(i) for i in range(gpus)]
    if gpus > len(ids):
        raise SystemExit(f'launch: GPUS={gpus} but CUDA_VISIBLE_DEVICES={visible!r} lists '
                         f'{len(ids)}.')
    return ids[:gpus]


def _workdir(args: list[str]) -> str | None:
    for i, a in enumerate(args):
        if a.startswith('--workdir='):
            return a.split('=', 1)[1]
        if a == '--workdir' and i + 1 < len(args):
            return args[i + 1]
    return None


# Set for the launched processes: the launcher holds their workdir's lock for them.
WORKDIR_LOCKED_ENV = 'ACTION_JAX_WORKDIR_LOCKED'


def lock_workdir(workdir: str, prog: str):
    """Holds an exclusive lock on `<workdir>/.lock` while the returned file is open, i.e. until
    this process exits: the OS drops it even after SIGKILL, so a lock is never stale."""
    os.makedirs(workdir, exist_ok=True)
    f = open(os.path.join(workdir, '.lock'), 'a+')
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        owner = f.read().strip() or '?'
        f.close()
        raise SystemExit(f'{prog}: workdir {workdir!r} is in use by another job ({owner}); '
                         'give this job its own --workdir.') from None
    f.seek(0)
    f.truncate()
    f.write(f'{prog} pid {os.getpid()} on host '
            f'{socket.gethostname()}\n')
    f.flush()
    return f


def process_envs(args) -> list[dict[str, str]]:
    """The environment of each process of this node."""
    cpu = args.devices_per_proc is not None
    nproc = args.nproc
    if cpu:
        if nproc is None:
            nproc = max((args.gpus or args.devices_per_proc) // args.devices_per_proc, 1)
        if args.gpus is not None and args.gpus != nproc * args.devices_per_proc:
            raise SystemExit(f'launch: GPUS={args.gpus} devices is not NPROC={nproc} × '
                             f'DEVICES_PER_PROC={args.devices_per_proc}.')
    nproc = nproc or 1
    if nproc < 1 or args.nnodes < 1 or not 0 <= args.node_rank < args.nnodes:
        raise SystemExit(f'launch: bad topology nnodes={args.nnodes} node_rank={args.node_rank} '
                         f'nproc={nproc}.')
    total = args.nnodes * nproc
    gpus = None if cpu else _visible_gpus(args.gpus)
    if gpus is not None and len(gpus) % nproc:
        raise SystemExit(f'launch: {len(gpus)} GPUs ({",".join(gpus)}) do not split evenly '
                         f'among NPROC={nproc} processes.')
    envs = []
    for local_rank in range(nproc):
        env = dict(os.environ)
        # Launcher-level variables must not leak into a single-process run as a topology.
        for k in ('JAX_NUM_PROCESSES', 'JAX_PROCESS_ID', 'JAX_LOCAL_DEVICE_IDS'):
            env.pop(k, None)
        if total > 1:
            env.update(JAX_NUM_PROCESSES=str(total),
                       JAX_PROCESS_ID=str(args.node_rank * nproc + local_rank),
                       MASTER_ADDR=args.master_addr, PORT=str(args.port))
        env['LOCAL_RANK'] = str(local_rank)
        if cpu:
            env['JAX_PLATFORMS'] = 'cpu'
            flags = [f for f in env.get('XLA_FLAGS', '').split()
                     if not f.startswith('--xla_force_host_platform_device_count')]
            env['XLA_FLAGS'] = ' '.join(
                flags + [f'--xla_force_host_platform_device_count={args.devices_per_proc}'])
        elif gpus is not None:
            per = len(gpus) // nproc
            env['CUDA_VISIBLE_DEVICES'] = ','.join(gpus[local_rank * per:(local_rank + 1) * per])
        envs.append(env)
    return envs


def _die_with_launcher():  # runs in the child between fork and exec
    """SIGTERM to the child when the launcher dies, even by SIGKILL (Linux): no orphans left
    waiting forever in a collective; the training loop checkpoints and exits."""
    import ctypes
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class _Group:
    """The node's processes: started together, stopped together."""

    def __init__(self, grace: float):
        self.procs: list[subprocess.Popen] = []
        self.grace = grace

    def start(self, cmd, envs):
        for env in envs:
            # A session per process: a terminal's Ctrl-C reaches them once, forwarded by us,
            # and the final SIGKILL reaches their data-loader workers too.
            self.procs.append(subprocess.Popen(
                cmd, env=env, start_new_session=True,
                preexec_fn=_die_with_launcher if sys.platform.startswith('linux') else None))

    def signal(self, signum, group: bool = False) -> None:
        for p in self.procs:
            if p.poll() is None:
                try:
                    # SIGTERM to the process alone: its data-loader workers must live on
                    # until it has saved the loader's position with the checkpoint.
                    os.killpg(p.pid, signum) if group else os.kill(p.pid, signum)
                except ProcessLookupError:
                    pass

    def stop(self, grace: float | None = None) -> None:
        """SIGTERM, then SIGKILL after the grace period, to whatever still runs."""
        self.signal(signal.SIGTERM)
        deadline = time.monotonic() + (self.grace if grace is None else grace)
        while any(p.poll() is None for p in self.procs) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.signal(signal.SIGKILL, group=True)
        for p in self.procs:
            p.wait()


def run(args) -> int:
    if args.port is None:
        if args.nnodes > 1:
            args.port = 29500
        else:
            args.port = _free_port()
    elif args.node_rank == 0 and args.nnodes == 1:
        _check_port_free(args.port)
    envs = process_envs(args)
    workdir = _workdir(args.args)
    testing = '--mode=test' in args.args or any(  # a test job only reads checkpoints
        a == '--mode' and b == 'test' for a, b in zip(args.args, args.args[1:]))
    lock = (lock_workdir(workdir, 'launch') if workdir and args.node_rank == 0 and not testing
            else None)
    if lock is not None:  # held for all the processes; else process 0 takes it itself
        for env in envs:
            env[WORKDIR_LOCKED_ENV] = '1'
    cmd = [sys.executable, '-u', '-m', args.module, *args.args]
    print(f'launch: node {args.node_rank}/{args.nnodes}, {len(envs)} process(es) '
          f'{[e.get("JAX_PROCESS_ID", "0") for e in envs]}, coordinator '
          f'{args.master_addr}:{args.port}'
          + (f', CUDA_VISIBLE_DEVICES {[e.get("CUDA_VISIBLE_DEVICES") for e in envs]}'
             if 'CUDA_VISIBLE_DEVICES' in envs[0] else '')
          + (f', {args.devices_per_proc} CPU devices each' if args.devices_per_proc else ''),
          file=sys.stderr, flush=True)

    group = _Group(args.grace)

    def forward(signum, frame):
        group.signal(signum)

    old = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        group.start(cmd, envs)
        deadline = time.monotonic() + args.timeout if args.timeout else None
        status, grace = None, None
        while True:
            codes = [p.poll() for p in group.procs]
            failed = [(i, c) for i, c in enumerate(codes) if c not in (None, 0)]
            if failed:
                i, status = failed[0]
                if any(c is None for c in codes):
                    print(f'launch: process {envs[i].get("JAX_PROCESS_ID", i)} exited with '
                          f'status {status}; stopping the others.', file=sys.stderr, flush=True)
                    # They are stuck in collectives waiting for it: no point waiting long.
                    grace = min(args.grace, 5.0)
                break
            if all(c == 0 for c in codes):
                status = 0
                break
            if deadline is not None and time.monotonic() > deadline:
                print(f'launch: timed out after {args.timeout:g} s; stopping all processes.',
                      file=sys.stderr, flush=True)
                status = TIMEOUT_STATUS
                break
            time.sleep(0.1)
    finally:
        group.stop(grace)
        for s, h in old.items():
            signal.signal(s, h)
        if lock is not None:
            lock.close()
    if status is not None and status < 0:  # killed by a signal: the shell's convention
        status = 128 - status
    return status


def main(argv=None) -> int:
    args = parse_args(argv)
    if not args.args:
        raise SystemExit('launch: no program arguments (put them after "--").')
    return run(args)


if __name__ == '__main__':
    sys.exit(main())
