# Chart of BenchmarkXenSeries: restore speed of the newest generation, cold
# page cache: read through a fresh ckptfs mount (what xl restore does),
# restic restore and borg extract to a file, and a plain file read. Run in
# docs/ (make bench does).
set datafile separator ","
set terminal png size 900,450
set output "bench-restore.png"
set title "restore of the newest generation (MB/s, higher is better)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set key top left
set ylabel "MB/s"
set yrange [0:*]
set xtics ("1%% dirty" 0, "5%% dirty" 1)
plot for [c=2:5] "bench-restore.csv" using c title columnheader(c)
