import sys

if "--wan" in sys.argv[1:]:
    from bench.wan import main
else:
    from bench.run import main

sys.exit(main())
