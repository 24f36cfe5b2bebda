# Chart of BenchmarkXenSeries: stored bytes per generation for each system
# ("ideal" = first image + dirty pages, uncompressed). Run in docs/ (make
# bench does).
set datafile separator ","
set terminal png size 1100,450
set output "bench-xen.png"
set key top left
set xlabel "generation"
set ylabel "stored MB"
set multiplot layout 1,2
do for [d in "0.01 0.05"] {
  set title sprintf("stored bytes, %g%% dirty pages per generation", real(d)*100)
  plot for [c=3:8] "bench-xen.csv" using (abs($1-real(d))<1e-9 ? $2 : 1/0):(column(c)/1e6) with linespoints title columnheader(c)
}
unset multiplot
