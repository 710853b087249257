#!/usr/bin/env python3
"""Summary of bench/compare.sh's CSV: min/median per contender, the ratios,
the small-file times, and (with a PNG path) a gnuplot chart.

usage: compare_report.py CSV [PNG] [RQBIT_SEEDERS]
"""
import csv
import os
import statistics
import subprocess
import sys
import tempfile

CURVE = ["p2pshare", "aria2c", "rqbit"]  # contenders that have a seeder count
ORDER = CURVE + ["barepipe", "tcp", "openssl", "sha1sum"]


def num(x):
    return float(x) if x not in ("", None) else None


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def f(x, spec=".2f"):
    return "-" if x is None else format(x, spec)


def main():
    path = sys.argv[1]
    png = sys.argv[2] if len(sys.argv) > 2 else ""
    rq_seeders = sys.argv[3] if len(sys.argv) > 3 else "?"
    rows = list(csv.DictReader(open(path)))
    big = [r for r in rows if r["kind"] == "big"]
    small = [r for r in rows if r["kind"] == "small"]

    groups = {}
    for r in big:
        groups.setdefault((r["contender"], r["seeders"]), []).append(r)
    key = lambda k: (ORDER.index(k[0]) if k[0] in ORDER else 99, int(k[1]) if k[1].isdigit() else 0)
    stats = {}
    for k in sorted(groups, key=key):
        rs = groups[k]
        mib = float(rs[0]["size_mib"])
        walls = [float(r["wall_s"]) for r in rs]
        dcpu = med([num(r["dl_cpu_s"]) for r in rs])
        scpu = med([num(r["seeders_cpu_s"]) for r in rs])
        tot = None if dcpu is None else dcpu + (scpu or 0.0)
        stats[k] = dict(
            n=len(rs), mib=mib, min=min(walls), med=statistics.median(walls),
            dcpu=dcpu, scpu=scpu, cpu_gib=None if tot is None else tot / (mib / 1024),
            drss=max([num(r["dl_rss_mib"]) or 0 for r in rs]) or None,
            srss=max([num(r["seeder_rss_mib"]) or 0 for r in rs]) or None,
            note=rs[0]["note"].split(";")[0] if k[0] in ("rqbit", "aria2c") else "",
        )
    if stats:
        mib = next(iter(stats.values()))["mib"]
        print(f"summary ({mib:.0f} MiB file; MB = 10^6 bytes; CPU = user+sys, medians; RSS = max over runs)")
        hdr = "%-9s %7s %4s %9s %9s %9s %9s %9s %10s %12s %10s %12s  %s"
        print(hdr % ("contender", "seeders", "runs", "min_s", "median_s", "best_MB/s", "med_MB/s",
                     "dl_cpu_s", "seed_cpu_s", "cpu_s/GiB", "dl_rss_MiB", "seed_rss_MiB", ""))
        for (c, n), s in stats.items():
            mb = s["mib"] * 1048576 / 1e6
            print(hdr % (c, n, s["n"], f(s["min"], ".3f"), f(s["med"], ".3f"), f(mb / s["min"], ".1f"),
                         f(mb / s["med"], ".1f"), f(s["dcpu"]), f(s["scpu"]), f(s["cpu_gib"]),
                         f(s["drss"], ".1f"), f(s["srss"], ".1f"), s["note"]))
        print("  (cpu_s/GiB: downloader + all seeders per GiB moved; sha1sum/openssl: the hash alone)")

        if any(c == "p2pshare" for c, _ in stats) and len({c for c, _ in stats}) > 1:
            print("\nratios (time of p2pshare / time of the other; > 1 means p2pshare is slower)")
        for (c, n), p in stats.items():
            if c != "p2pshare":
                continue
            for other, on in (("aria2c", n), ("rqbit", n), ("tcp", "1"), ("barepipe", "1")):
                o = stats.get((other, on))
                if o:
                    label = f"p2pshare/{other}" + (f" ({n} seeders)" if other in CURVE else f" (p2pshare {n} seeders)")
                    print(f"  {label:<38} min {p['min'] / o['min']:6.2f}   median {p['med'] / o['med']:6.2f}")
            o = stats.get(("rqbit", n))
            if o and p["cpu_gib"] and o["cpu_gib"]:
                print(f"  CPU s/GiB, {n} seeders: p2pshare {p['cpu_gib']:.2f} vs rqbit {o['cpu_gib']:.2f} "
                      f"(ratio {p['cpu_gib'] / o['cpu_gib']:.2f}; downloader {f(p['dcpu'])} vs {f(o['dcpu'])} s, "
                      f"seeders {f(p['scpu'])} vs {f(o['scpu'])} s)")
        if any(c == "rqbit" for c, _ in stats):
            print(f"  rqbit leeched from {rq_seeders} seeders")

    if small:
        print("\nsmall files: a fresh 1 MiB file from 1 seeder, start of the download to a verified file")
        by = {}
        for r in small:
            by.setdefault(r["contender"], []).append(float(r["wall_s"]))
        for c, ws in by.items():
            what = {"p2pshare": "p2pctl download_file on running daemons (incl. p2pctl start)",
                    "rqbit": "one-shot `rqbit download --exit-on-finish`: process start, session, announce, connect, download, exit",
                    "rqbit-daemon": "running `rqbit server`: HTTP API add to the first 1 ms poll seeing it finished"}.get(c, "")
            print(f"  {c:<12} runs {len(ws):3d}  median {statistics.median(ws) * 1000:8.1f} ms  "
                  f"min {min(ws) * 1000:8.1f} ms  max {max(ws) * 1000:8.1f} ms   {what}")

    if png and stats:
        chart(stats, png)


def chart(stats, png):
    counts = sorted({int(n) for c, n in stats if c in CURVE and n.isdigit()})
    d = tempfile.mkdtemp(prefix="p2pchart.")
    mib = next(iter(stats.values()))["mib"]
    mb = mib * 1048576 / 1e6
    best = lambda s: mb / s["min"]
    gp = [f"set terminal pngcairo size 960,600 font ',11'", f"set output '{png}'",
          "set grid ytics", "set ylabel 'MB/s (best run)'", "set yrange [0:*]", "set key outside right top"]
    if len(counts) > 1:
        gp += [f"set title 'Download of a {mib:.0f} MiB file over loopback vs seeder count'",
               "set xlabel 'seeders'", f"set xtics ({', '.join(str(c) for c in counts)})",
               f"set xrange [{counts[0] - 0.5}:{counts[-1] + 0.5}]"]
        plots = []
        for c in CURVE:
            pts = sorted((int(n), best(s)) for (cc, n), s in stats.items() if cc == c and n.isdigit())
            if not pts:
                continue
            fn = os.path.join(d, c + ".dat")
            with open(fn, "w") as out:
                out.writelines(f"{x} {y:.1f}\n" for x, y in pts)
            plots.append(f"'{fn}' using 1:2 with linespoints lw 2 pt 7 title '{c}'")
        for c in ("barepipe", "tcp"):
            s = stats.get((c, "1"))
            if s:
                plots.append(f"{best(s):.1f} with lines dt 2 lw 2 title '{c} (baseline)'")
        gp.append("plot " + ", ".join(plots))
    else:
        gp += [f"set title 'Download of a {mib:.0f} MiB file over loopback (best run; hashes: read+SHA-1 only)'",
               "set style data histograms", "set style fill solid 0.7 border -1", "set boxwidth 0.7",
               "set xtics rotate by -20", "unset key"]
        fn = os.path.join(d, "bars.dat")
        with open(fn, "w") as out:
            for (c, n), s in stats.items():
                label = c if n == "-" or c not in CURVE else f"{c} ({n} seeders)"
                out.write(f"\"{label}\" {best(s):.1f}\n")
        gp.append(f"plot '{fn}' using 2:xtic(1), '' using 0:2:(sprintf('%.0f', $2)) with labels offset 0,0.8")
    subprocess.run(["gnuplot"], input="\n".join(gp) + "\n", text=True, check=True)
    for x in os.listdir(d):
        os.remove(os.path.join(d, x))
    os.rmdir(d)
    print(f"chart: {png}")


if __name__ == "__main__":
    main()
