module stockpipe/pause

go 1.22
