# checks.sh - the checks of their arguments and of the programs they run
# that the scripts of bench/ share; sourced, not run.

# need_positive WHO WHAT VALUE...: each VALUE a positive integer, else one
# line "WHO: WHAT must be positive integers (got 'VALUE')" and exit 2.
need_positive() {
	local who=$1 what=$2 v
	shift 2
	for v in "$@"; do
		case $v in
		'' | *[!0-9]* | 0)
			echo "$who: $what must be" \
				"positive integers (got '$v')" >&2
			exit 2
			;;
		esac
	done
}

# need_built WHO STATUS HINT FILE...: each FILE an executable, else one
# line "WHO: cannot find FILE; build it with makeHINT" and exit STATUS.
need_built() {
	local who=$1 status=$2 hint=$3 f
	shift 3
	for f in "$@"; do
		if [ ! -x "$f" ]; then
			echo "$who: cannot find $f; build it with make$hint" >&2
			exit "$status"
		fi
	done
}
