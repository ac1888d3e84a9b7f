# The warm start of the Ruby client (harness/src/probe/warm.rs). Run as
# `ruby -e THIS LIBRARY...`: requires the libraries once, then reads requests, a JSON
# object a line on stdin, and forks a child per request. The child enters the request's
# network namespace, takes its stdin, stdout, stderr and environment, and loads the
# client's own script as `ruby SCRIPT ARGS` would run it; it ends as that process would
# (its exit status, or the exception's message and 1). Each ended child is reported on
# stdout as {"id": ID, "status": WAIT_STATUS}. At the end of stdin the children are
# killed and this ends.
require 'fiddle'
require 'json'

CLONE_NEWNET = 0x40000000

before = ENV.to_h
ARGV.each { |library| require library }
imported = ENV.to_h.reject { |name, value| before[name] == value }
setns = Fiddle::Function.new(Fiddle::Handle::DEFAULT['setns'],
                             [Fiddle::TYPE_INT, Fiddle::TYPE_INT], Fiddle::TYPE_INT)
report = $stdout.dup
report.sync = true
reporting = Mutex.new
running = {}
report.write("{\"ready\": true}\n")

while (line = $stdin.gets)
  request = JSON.parse(line)
  pid = fork do
    report.close
    netns = File.open(request['netns'])
    if setns.call(netns.fileno, CLONE_NEWNET) != 0
      File.write(request['stderr'], "imdsh-warm: entering #{request['netns']}: #{Fiddle.last_error}\n")
      exit!(127)
    end
    entered = netns.stat.ino == File.stat('/proc/self/ns/net').ino
    netns.close
    unless entered
      File.write(request['stderr'], "imdsh-warm: not in #{request['netns']} after entering it\n")
      exit!(127)
    end
    $stdin.reopen(File::NULL)
    $stdout.reopen(request['stdout'], 'w')
    $stderr.reopen(request['stderr'], 'w')
    # What the requires did to the environment, they would have done to the request's
    # where it held what this process held before them.
    env = request['env']
    imported.each { |name, value| env[name] = value if env[name] == before[name] }
    ENV.replace(env)
    $0 = request['program']
    ARGV.replace(request['args'])
    load request['program']
    exit 0
  end
  reporting.synchronize { running[pid] = true }
  Thread.new(pid, request['id']) do |child, id|
    _, status = Process.wait2(child)
    reporting.synchronize do
      running.delete(child)
      report.write(JSON.generate('id' => id, 'status' => status.to_i) + "\n")
    end
  end
end
reporting.synchronize do
  running.each_key do |child|
    Process.kill(:KILL, child)
  rescue SystemCallError
    nil
  end
end
exit! 0
