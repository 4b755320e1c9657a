from datomic_aws.cli import main

main()
