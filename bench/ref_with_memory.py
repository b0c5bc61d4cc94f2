"""Runs bench/torch_samix_ref.py unchanged and adds, after each of its RESULT lines, the
peak memory of that method: on CUDA torch.cuda.max_memory_allocated() (reset after each method),
on the CPU the process's peak RSS (VmHWM, reset through /proc/self/clear_refs where allowed).
The reference builds all its networks (online, EMA, Mixer) before the first method, so its first
figure includes them all. Usage: python3 bench/ref_with_memory.py PATH/torch_samix_ref.py [its args]"""
import builtins, importlib.util, sys

path = sys.argv[1]
sys.argv = [path] + sys.argv[2:]
spec = importlib.util.spec_from_file_location("torch_samix_ref", path)
ref = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ref)
torch = ref.torch
cuda = "--device" in sys.argv and sys.argv[sys.argv.index("--device") + 1].startswith("cuda")

def peak_mib():
    if cuda:
        return "peak_alloc", torch.cuda.max_memory_allocated() / 2**20
    with open("/proc/self/status") as f:
        kib = next(int(l.split()[1]) for l in f if l.startswith("VmHWM:"))
    return "peak_rss", kib / 1024

def reset():
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    else:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass

def print_with_memory(*args, **kwargs):
    line = " ".join(str(a) for a in args)
    if line.startswith("RESULT"):
        label, mib = peak_mib()
        line = f"{line} {label}={mib:.0f}MiB"
        reset()
    builtins.print(line, **{k: v for k, v in kwargs.items() if k != "sep"})

ref.print = print_with_memory
ref.main()
