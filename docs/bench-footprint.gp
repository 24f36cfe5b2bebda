# Chart of BenchmarkXenSeries: disk footprint (du -sb) after each generation
# of ckptfs (page mode, its whole store directory), restic's and borg's
# repositories, and plain files (every image kept). Run in docs/ (make
# bench does).
set datafile separator ","
set terminal png size 1100,450
set output "bench-footprint.png"
set key top left
set xlabel "generation"
set ylabel "on disk, MB (log scale)"
set logscale y
set multiplot layout 1,2
do for [d in "0.01 0.05"] {
  set title sprintf("disk footprint, %g%% dirty pages per generation", real(d)*100)
  plot for [c=3:6] "bench-footprint.csv" using (abs($1-real(d))<1e-9 ? $2 : 1/0):(column(c)/1e6) with linespoints title columnheader(c)
}
unset multiplot
